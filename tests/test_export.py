"""gpt_core.export: a run becomes a Hugging Face folder that transformers loads with the same logits and ids."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.bpe import Merge
from gpt_core.checkpoints import load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
from gpt_core.export import export_run, gpt2_layout_problems, main
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer import BPETokenizer
from gpt_core.train import train
from gpt_core.train_config import TrainConfig

transformers = pytest.importorskip("transformers")

BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "bundled"
TEXTS = [
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "I'll say it's 2024, they've 3.14159 and 1,000,000 reasons; don't, won't, we'd",
    "  leading spaces,\ttabs\t\tand\n\n\nnewlines   \n  trailing  ",
    "café naïve Ünïcödé — “quotes” ñandú 日本語のテキスト 🙂🚀 Ωμέγα",
    "one<|endoftext|>two <|endoftext|> three<|endoftext|>",
    "",
    "x",
]


def hf_ids(hf_tokenizer, text: str) -> list[int]:
    return hf_tokenizer(text, add_special_tokens=False)["input_ids"]


def largest_logit_difference(folder: Path, ours, ids: torch.Tensor) -> float:
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        difference = (theirs(ids).logits - ours(ids)).abs().max().item()
    print(f"largest logit difference, transformers vs LLM Lab: {difference:.2e}")
    return difference


def tiny_gpt2_vocab_checkpoint(folder: Path, tokenizer_file: Path, **overrides) -> GPTModel:
    """A 2-layer, emb 32 model with GPT-2's 50,257-token vocabulary and random weights."""
    torch.manual_seed(7)
    model = GPTModel(GPTConfig(n_layers=2, emb_dim=32, n_heads=2, context_length=64, **overrides)).eval()
    with torch.no_grad():  # GPT-2's init keeps biases and LayerNorms at 0/1; make every weight count
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    save_checkpoint(model, folder, tokenizer_path=tokenizer_file)
    return model


@pytest.fixture(scope="module")
def gpt2_tokenizer_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpt2") / "lab_tokenizer.json"
    BPETokenizer.gpt2().save(path)
    return path


@pytest.fixture(scope="module")
def bundled_export(tmp_path_factory) -> Path:
    return export_run(BUNDLED, tmp_path_factory.mktemp("bundled-hf"))


@pytest.fixture(scope="module")
def gpt2_vocab_export(tmp_path_factory, gpt2_tokenizer_file) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tiny_gpt2_vocab_checkpoint(folder / "ckpt", gpt2_tokenizer_file)
    return export_run(folder / "ckpt", folder / "hf")


# ---------------------------------------------------------------- the model: same logits
def test_bundled_model_gives_the_same_logits_in_transformers(bundled_export):
    ours = load_checkpoint(BUNDLED)
    ids = torch.tensor([BPETokenizer.load(BUNDLED / "lab_tokenizer.json").encode(TEXTS[0])])
    assert largest_logit_difference(bundled_export, ours, ids) < 1e-4
    config = json.loads((bundled_export / "config.json").read_text())
    assert (config["vocab_size"], config["n_positions"], config["n_layer"], config["n_embd"]) == (4096, 256, 4, 192)
    assert config["bos_token_id"] == config["eos_token_id"] == 4095 and config["tie_word_embeddings"] is True
    assert json.loads((bundled_export / "generation_config.json").read_text()) == {
        "bos_token_id": 4095, "eos_token_id": 4095}
    assert (bundled_export / "model.safetensors").stat().st_size > 10_000_000


@pytest.mark.parametrize("tie", [True, False])
def test_tiny_gpt2_vocab_model_tied_and_untied(tmp_path, gpt2_tokenizer_file, tie):
    ours = tiny_gpt2_vocab_checkpoint(tmp_path / "ckpt", gpt2_tokenizer_file, tie_weights=tie, qkv_bias=not tie)
    out = export_run(tmp_path / "ckpt", tmp_path / "hf")
    ids = torch.randint(0, 50257, (2, 40), generator=torch.Generator().manual_seed(0))
    assert largest_logit_difference(out, ours, ids) < 1e-4
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is tie and config["bos_token_id"] == config["eos_token_id"] == 50256
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out)
    shares = theirs.lm_head.weight.data_ptr() == theirs.transformer.wte.weight.data_ptr()
    assert shares is tie


def test_switches_gpt2_can_express_are_exported(tmp_path, gpt2_tokenizer_file):
    if not hasattr(GPTConfig(), "activation"):
        pytest.skip("GPTConfig has no ablation switches yet")
    ours = tiny_gpt2_vocab_checkpoint(tmp_path / "ckpt", gpt2_tokenizer_file, activation="relu",
                                      pos_embedding=False)
    assert gpt2_layout_problems(ours.cfg) == []
    out = export_run(tmp_path / "ckpt", tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["activation_function"] == "relu"
    ids = torch.randint(0, 50257, (1, 30), generator=torch.Generator().manual_seed(1))
    assert largest_logit_difference(out, ours, ids) < 1e-4
    reloaded = load_checkpoint(out)  # and LLM Lab reads the export back: ReLU, a zero position embedding
    assert reloaded.cfg.activation == "relu" and reloaded.pos_emb.weight.abs().max().item() == 0.0


# ---------------------------------------------------------------- the tokenizer: same ids
@pytest.mark.parametrize("which", ["bundled", "gpt2"])
def test_autotokenizer_gives_the_engine_ids(bundled_export, gpt2_vocab_export, gpt2_tokenizer_file, which):
    folder, lab_file = {"bundled": (bundled_export, BUNDLED / "lab_tokenizer.json"),
                        "gpt2": (gpt2_vocab_export, gpt2_tokenizer_file)}[which]
    ours = BPETokenizer.load(lab_file)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        ids = ours.encode(text, allowed_special="all")
        assert hf_ids(theirs, text) == ids, text
        assert theirs.decode(ids) == text
    eot = ours.eot_id
    assert (theirs.bos_token_id, theirs.eos_token_id, theirs.unk_token_id) == (eot, eot, eot)
    assert theirs.eos_token == "<|endoftext|>" and theirs.model_max_length == {"bundled": 256, "gpt2": 64}[which]
    assert hf_ids(theirs, "one<|endoftext|>") == [*ours.encode("one"), eot]


def test_gpt2_export_matches_gpt2s_own_numbers(gpt2_vocab_export):
    theirs = transformers.AutoTokenizer.from_pretrained(gpt2_vocab_export)
    assert hf_ids(theirs, "Hello, world") == [15496, 11, 995]
    assert hf_ids(theirs, "hello world") == [31373, 995]
    assert len(theirs) == 50257


@pytest.fixture(scope="module")
def tokenizer_pairs(bundled_export, gpt2_vocab_export, gpt2_tokenizer_file):
    return [(BPETokenizer.load(BUNDLED / "lab_tokenizer.json"), transformers.AutoTokenizer.from_pretrained(bundled_export)),
            (BPETokenizer.load(gpt2_tokenizer_file), transformers.AutoTokenizer.from_pretrained(gpt2_vocab_export))]


PIECES = st.sampled_from(["'s", "'ll", " ", "  ", "\n", "\t", "<|endoftext|>", "42", " the", "é", "🙂", "日本", "!?"])


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.one_of(st.text(max_size=12), PIECES), max_size=8).map("".join))
def test_any_text_gets_the_same_ids_and_decodes_back(tokenizer_pairs, text):
    for ours, theirs in tokenizer_pairs:
        ids = ours.encode(text, allowed_special="all")
        assert hf_ids(theirs, text) == ids
        assert theirs.decode(ids) == ours.decode(ids)


def test_a_tokenizer_with_non_byte_order_ids_keeps_each_tokens_id(tmp_path):
    """byte_ids need not be 0..255 in byte order, and ids may have gaps: each token keeps its own id."""
    trained = BPETokenizer.train("the cat sat on the mat; the hat! " * 20, 280)

    def moved(token_id: int) -> int:  # byte b gets id 255 - b; merged tokens move up by 10 (ids 256-265 unused)
        return 255 - token_id if token_id < 256 else token_id + 10

    merges = [Merge((moved(m.pair[0]), moved(m.pair[1])), moved(m.new_id)) for m in trained.merges]
    shuffled = BPETokenizer(merges, special_tokens={"<|endoftext|>": 300}, byte_ids=[moved(b) for b in range(256)])
    shuffled.save(tmp_path / "lab_tokenizer.json")
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=301, n_layers=1, emb_dim=16, n_heads=2, context_length=32))
    save_checkpoint(model, tmp_path / "ckpt", tokenizer_path=tmp_path / "lab_tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(export_run(tmp_path / "ckpt", tmp_path / "hf"))
    text = "the cat sat on a mat<|endoftext|>"
    ids = shuffled.encode(text, allowed_special="all")
    assert ids == [moved(i) for i in trained.encode(text, allowed_special="all")[:-1]] + [300]
    assert hf_ids(theirs, text) == ids and hf_ids(theirs, "a") == [255 - ord("a")]
    assert theirs.decode(ids) == text


# ---------------------------------------------------------------- refusals
REFUSED = [
    ({"causal_mask": False}, "trained without a causal mask; GPT-2's layout .* always masks the future"),
    ({"norm": "post"}, "LayerNorms after each sublayer \\(post-norm\\)"),
    ({"norm": "none"}, "LayerNorms nowhere \\(no LayerNorm\\)"),
    ({"residual": False}, "without shortcut \\(residual\\) connections"),
]


@pytest.mark.parametrize("switches, message", REFUSED)
def test_a_model_gpt2_cannot_run_is_refused(tmp_path, switches, message):
    if not hasattr(GPTConfig(), "causal_mask"):
        pytest.skip("GPTConfig has no ablation switches yet")
    cfg = GPTConfig(vocab_size=300, n_layers=1, emb_dim=16, n_heads=2, context_length=16, **switches)
    assert len(gpt2_layout_problems(cfg)) == 1
    save_checkpoint(GPTModel(cfg), tmp_path / "ckpt")
    with pytest.raises(ValueError, match=message + ".*Export is only for models GPT-2 can run"):
        export_run(tmp_path / "ckpt", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # checked before anything is written


def test_two_problems_are_both_named():
    if not hasattr(GPTConfig(), "causal_mask"):
        pytest.skip("GPTConfig has no ablation switches yet")
    problems = gpt2_layout_problems(GPTConfig(causal_mask=False, norm="post"))
    assert [p.split(";")[0] for p in problems] == ["This model was trained without a causal mask",
                                                   "This model puts its LayerNorms after each sublayer (post-norm)"]


def test_bad_folders_are_refused(tmp_path, gpt2_tokenizer_file):
    with pytest.raises(ValueError, match="holds no checkpoint: expected a run folder"):
        export_run(tmp_path / "nowhere", tmp_path / "hf")
    tiny_gpt2_vocab_checkpoint(tmp_path / "ckpt", gpt2_tokenizer_file)
    with pytest.raises(ValueError, match="would overwrite the checkpoint's own files"):
        export_run(tmp_path / "ckpt", tmp_path / "ckpt")
    save_checkpoint(GPTModel(GPTConfig(vocab_size=300, n_layers=1, emb_dim=16, n_heads=2, context_length=16)),
                    tmp_path / "other")
    with pytest.raises(ValueError, match="holds an LLM Lab checkpoint; export into another folder"):
        export_run(tmp_path / "ckpt", tmp_path / "other")
    with pytest.raises(ValueError, match="has no tokenizer file; pass the tokenizer"):
        export_run(tmp_path / "other", tmp_path / "hf")
    small = BPETokenizer.train("a tiny text", 260)
    small.save(tmp_path / "small.json")
    save_checkpoint(GPTModel(GPTConfig(vocab_size=258, n_layers=1, emb_dim=16, n_heads=2, context_length=16)),
                    tmp_path / "too-small", tokenizer_path=tmp_path / "small.json")
    with pytest.raises(ValueError, match="tokenizer has 260 ids but the model only 258"):
        export_run(tmp_path / "too-small", tmp_path / "hf")


def test_a_checkpoint_without_a_tokenizer_takes_one(tmp_path):
    torch.manual_seed(3)
    model = GPTModel(GPTConfig(vocab_size=256, n_layers=1, emb_dim=16, n_heads=2, context_length=16)).eval()
    save_checkpoint(model, tmp_path / "bytes-run")
    assert main([str(tmp_path / "bytes-run"), str(tmp_path / "hf"), "--tokenizer", "bytes"]) == 0
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_ids(theirs, "hé\n") == [104, 195, 169, 10] and theirs.eos_token is None
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] is None


# ---------------------------------------------------------------- the command line
def test_cli_writes_the_folder_and_prints_how_to_load_it(tmp_path, capsys):
    assert main([str(BUNDLED), str(tmp_path / "hf")]) == 0
    printed = capsys.readouterr().out
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "generation_config.json"):
        assert f"wrote {tmp_path / 'hf' / name} (" in printed
    assert f"GPT2LMHeadModel.from_pretrained('{tmp_path / 'hf'}')" in printed
    assert f"AutoTokenizer.from_pretrained('{tmp_path / 'hf'}')" in printed


def test_cli_refusal_exits_2_with_the_message_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gpt_core.export", str(tmp_path / "missing"), str(tmp_path / "hf")],
                            capture_output=True, text=True, cwd=BUNDLED.parents[1], timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("Not exported: ") and "holds no checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_refuses_a_model_gpt2_cannot_run(tmp_path, capsys):
    if not hasattr(GPTConfig(), "causal_mask"):
        pytest.skip("GPTConfig has no ablation switches yet")
    save_checkpoint(GPTModel(GPTConfig(vocab_size=300, n_layers=1, emb_dim=16, n_heads=2, context_length=16,
                                       causal_mask=False)), tmp_path / "ckpt")
    assert main([str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 2
    assert "without a causal mask" in capsys.readouterr().err


# ---------------------------------------------------------------- run folders, old and new file names
def test_a_training_run_folder_exports_its_newest_checkpoint(tmp_path):
    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 30
    tokenizer = BPETokenizer.train(text, 300)
    ids = tokenizer.encode(text)
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=300, n_layers=1, emb_dim=16, n_heads=2, context_length=16))
    config = TrainConfig(max_steps=2, batch_size=2, warmup_steps=1, eval_every=0, out_dir=str(tmp_path / "run"),
                         tokenizer=tokenizer, device="cpu", autocast="off")
    events = list(train(model, ids, None, config))
    assert events[-1].reason == "max_steps"
    assert (tmp_path / "run" / "lab_tokenizer.json").exists()
    assert (tmp_path / "run" / "step-000002" / "lab_tokenizer.json").exists()
    out = export_run(tmp_path / "run", tmp_path / "hf")
    probe = torch.tensor([ids[:16]])
    assert largest_logit_difference(out, load_checkpoint(tmp_path / "run"), probe) < 1e-4
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_ids(theirs, text[:200]) == tokenizer.encode(text[:200])


def test_an_old_checkpoint_with_tokenizer_json_still_loads_and_exports(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(BUNDLED, old)
    (old / "lab_tokenizer.json").rename(old / "tokenizer.json")
    info = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**info, "tokenizer": "tokenizer.json"}))
    assert load_checkpoint_tokenizer(old).vocab_size == 4096
    theirs = transformers.AutoTokenizer.from_pretrained(export_run(old, tmp_path / "hf"))
    assert hf_ids(theirs, TEXTS[0]) == BPETokenizer.load(old / "tokenizer.json").encode(TEXTS[0])


def test_loading_a_hugging_face_tokenizer_json_as_a_lab_tokenizer_says_what_it_is(bundled_export):
    with pytest.raises(ValueError, match="is a Hugging Face tokenizers file.*AutoTokenizer.from_pretrained"):
        BPETokenizer.load(bundled_export / "tokenizer.json")
