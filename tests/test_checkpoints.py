"""GPT-2 weights in Hugging Face format (both directions), our own checkpoints, and bad files."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt_core.checkpoints import (
    export_hf,
    load_checkpoint,
    load_hf_gpt2,
    read_checkpoint_info,
    save_checkpoint,
)
from gpt_core.model import GPTConfig, GPTModel

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

HF_SHAPES = [
    dict(n_embd=48, n_head=3, n_layer=2, n_positions=40, vocab_size=120),
    dict(n_embd=36, n_head=6, n_layer=3, n_positions=64, vocab_size=257),
    dict(n_embd=64, n_head=4, n_layer=1, n_positions=1024, vocab_size=50257),
]


def make_hf(tmp_path, seed=0, safe=True, **shape):
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape)).eval()
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    return hf


def max_logit_diff(ours: GPTModel, hf, ids) -> float:
    with torch.no_grad():
        return (ours(ids) - hf(ids).logits).abs().max().item()


@pytest.mark.parametrize("shape", HF_SHAPES, ids=lambda s: f"h{s['n_head']}_d{s['n_embd']}_ctx{s['n_positions']}")
def test_load_hf_gpt2_matches_transformers(tmp_path, shape):
    hf = make_hf(tmp_path, **shape)
    ours = load_hf_gpt2(tmp_path)
    assert ours.cfg.n_heads == shape["n_head"] and ours.cfg.context_length == shape["n_positions"]
    ids = torch.randint(0, shape["vocab_size"], (2, 17))
    diff = max_logit_diff(ours, hf, ids)
    print(f"HF -> ours {shape}: max logit diff {diff:.2e}")
    assert diff < 1e-4


def test_load_pytorch_model_bin_without_prefix(tmp_path):
    shape = HF_SHAPES[0]
    hf = make_hf(tmp_path, seed=1, **shape)
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = load_hf_gpt2(tmp_path)
    diff = max_logit_diff(ours, hf, torch.randint(0, 120, (1, 12)))
    print(f"pytorch_model.bin: max logit diff {diff:.2e}")
    assert diff < 1e-4


def test_pytorch_model_bin_with_prefix_and_lm_head(tmp_path):
    hf = make_hf(tmp_path, seed=2, **HF_SHAPES[1])
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")  # 'transformer.' prefix, tied lm_head.weight
    ours = load_hf_gpt2(tmp_path)
    diff = max_logit_diff(ours, hf, torch.randint(0, 257, (1, 12)))
    print(f"pytorch_model.bin with prefix: max logit diff {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("qkv_bias, tie", [(True, True), (False, True), (True, False)])
def test_export_hf_round_trip(tmp_path, qkv_bias, tie):
    torch.manual_seed(3)
    cfg = GPTConfig(vocab_size=90, context_length=32, emb_dim=48, n_heads=6, n_layers=2, qkv_bias=qkv_bias,
                    tie_weights=tie)
    ours = GPTModel(cfg).eval()
    export_hf(ours, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    diff = max_logit_diff(ours, hf, torch.randint(0, 90, (2, 20)))
    print(f"ours -> HF (qkv_bias={qkv_bias}, tie={tie}): max logit diff {diff:.2e}")
    assert diff < 1e-5
    back = load_hf_gpt2(tmp_path)
    assert max_logit_diff(back, hf, torch.randint(0, 90, (1, 9))) < 1e-5


def test_wrong_shape_names_key_and_shapes(tmp_path):
    make_hf(tmp_path, **HF_SHAPES[0])
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["transformer.wpe.weight"] = torch.zeros(39, 48)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"'pos_emb.weight' has shape \(39, 48\).*needs \(40, 48\)"):
        load_hf_gpt2(tmp_path)


def test_missing_key_is_named(tmp_path):
    make_hf(tmp_path, **HF_SHAPES[0])
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing the weight 'h.1.mlp.c_fc.weight'"):
        load_hf_gpt2(tmp_path)


class NotAWeight:
    """Anything that is not a tensor makes a pickle unsafe to load."""


def test_unsafe_pickle_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 8, "n_head": 2, "n_layer": 1}))
    torch.save({"wte.weight": torch.zeros(2, 2), "payload": NotAWeight()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="Refused to load pytorch_model.bin"):
        load_hf_gpt2(tmp_path)


def test_unsupported_variant_and_unknown_name(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"activation_function": "silu"}))
    with pytest.raises(ValueError, match="activation_function='silu'"):
        load_hf_gpt2(tmp_path)
    with pytest.raises(ValueError, match="neither a folder nor a GPT-2 name"):
        load_hf_gpt2("not-a-model")


def test_hub_name_downloads_through_hf_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    folder = tmp_path / "snapshot"
    hf = make_hf(folder, **HF_SHAPES[2])
    requested = []

    def fake_download(repo_id, filename, **kwargs):
        requested.append((repo_id, filename))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    ours = load_hf_gpt2("gpt2")
    assert requested == [("openai-community/gpt2", "config.json"), ("openai-community/gpt2", "model.safetensors")]
    assert max_logit_diff(ours, hf, torch.tensor([[15496, 11, 314, 716]])) < 1e-4


def test_hub_offline_gives_clear_message(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError("Cannot reach https://huggingface.co")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ConnectionError, match="GPT-2 weights need the internet.*other models still work"):
        load_hf_gpt2("gpt2-medium")


def test_save_and_load_checkpoint(tmp_path):
    torch.manual_seed(4)
    cfg = GPTConfig.preset("nano", vocab_size=300)
    model = GPTModel(cfg).eval()
    tokenizer_file = tmp_path / "tok.json"
    tokenizer_file.write_text('{"merges": []}')
    out = save_checkpoint(model, tmp_path / "ckpt", tokenizer_path=tokenizer_file, extra={"step": 12})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tok.json"]
    info = read_checkpoint_info(out)
    assert info["extra"] == {"step": 12} and info["tokenizer"] == "tok.json"
    loaded = load_checkpoint(out)
    ids = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert loaded.cfg == cfg and loaded.out_head.weight is loaded.tok_emb.weight
    save_checkpoint(model, out)  # overwriting in place works (temp file + rename)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_load_checkpoint_checks_shapes(tmp_path):
    model = GPTModel(GPTConfig.preset("nano", vocab_size=300))
    save_checkpoint(model, tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    info["gpt_config"]["emb_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"'tok_emb.weight' has shape \(300, 128\).*needs \(300, 64\)"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="config.json is missing"):
        load_checkpoint(tmp_path / "nowhere")
