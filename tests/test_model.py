"""GPTConfig, presets, the model's shapes, capture API, parameter counts and memory estimates."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from gpt_core.device import autocast_dtype, describe_device, pick_device
from gpt_core.model import (
    GELU,
    PRESETS,
    FeedForward,
    ForwardCapture,
    GPTConfig,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    estimate_memory,
    parameter_breakdown,
)

TINY = GPTConfig(vocab_size=97, context_length=16, emb_dim=24, n_heads=3, n_layers=2)


@pytest.mark.parametrize("name, dims, params", [
    ("gpt2-small", (768, 12, 12), 124_439_808),
    ("gpt2-medium", (1024, 16, 24), 354_823_168),
    ("gpt2-large", (1280, 20, 36), 774_030_080),
    ("gpt2-xl", (1600, 25, 48), 1_557_611_200),
])
def test_gpt2_presets_match_openai(name, dims, params):
    cfg = GPTConfig.preset(name)
    assert (cfg.emb_dim, cfg.n_heads, cfg.n_layers) == dims
    assert (cfg.context_length, cfg.vocab_size, cfg.qkv_bias, cfg.tie_weights) == (1024, 50257, True, True)
    assert sum(count for _, count in parameter_breakdown(cfg)) == params


def test_classroom_presets_and_overrides():
    assert [(PRESETS[n].n_layers, PRESETS[n].emb_dim, PRESETS[n].n_heads, PRESETS[n].context_length)
            for n in ("nano", "micro", "mini")] == [(2, 128, 4, 128), (4, 256, 4, 256), (6, 384, 6, 256)]
    cfg = GPTConfig.preset("nano", vocab_size=512)
    assert cfg.vocab_size == 512 and PRESETS["nano"].vocab_size == 50257


@pytest.mark.parametrize("kwargs, message", [
    ({"emb_dim": 100, "n_heads": 3}, "divisible by n_heads"),
    ({"n_layers": 0}, "n_layers must be a positive"),
    ({"drop_rate": 1.5}, "drop_rate must be between"),
    ({"causal_mask": "no"}, "GPTConfig.causal_mask must be True or False, got 'no'"),
    ({"pos_embedding": 0}, "GPTConfig.pos_embedding must be True or False, got 0"),
    ({"residual": None}, "GPTConfig.residual must be True or False, got None"),
    ({"norm": "rms"}, "norm must be one of pre, post, none .*got 'rms'"),
    ({"activation": "swish"}, "activation must be one of gelu, relu, got 'swish'"),
])
def test_config_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_config_dict_round_trip_and_unknown_keys():
    assert GPTConfig.from_dict(TINY.to_dict()) == TINY
    switches = ("causal_mask", "pos_embedding", "residual", "norm", "activation")
    old_dict = {key: value for key, value in TINY.to_dict().items() if key not in switches}  # saved before them
    assert GPTConfig.from_dict(old_dict) == TINY
    assert [getattr(TINY, key) for key in switches] == [True, True, True, "pre", "gelu"]  # GPT-2's
    with pytest.raises(ValueError, match="Unknown GPTConfig keys: n_embd"):
        GPTConfig.from_dict({"n_embd": 768})
    with pytest.raises(ValueError, match="Unknown preset 'gpt5'"):
        GPTConfig.preset("gpt5")


def test_layer_norm_and_gelu_match_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    norm = LayerNorm(8)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    assert torch.allclose(norm(x), (x - mean) / torch.sqrt(var + 1e-5), atol=1e-5)
    tanh_gelu = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
    assert torch.allclose(GELU()(x), tanh_gelu, atol=1e-6)
    assert FeedForward(TINY)(torch.randn(2, 5, 24)).shape == (2, 5, 24)
    assert TransformerBlock(TINY)(torch.randn(2, 5, 24)).shape == (2, 5, 24)


def test_logits_shape_tied_head_and_init():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    assert model(torch.randint(0, 97, (2, 7))).shape == (2, 7, 97)
    assert model.out_head.weight is model.tok_emb.weight
    assert model.num_parameters() == sum(count for _, count in parameter_breakdown(model))
    untied = GPTModel(GPTConfig(**{**TINY.to_dict(), "tie_weights": False}))
    assert untied.out_head.weight is not untied.tok_emb.weight
    assert dict(parameter_breakdown(untied))["output head"] == 97 * 24
    big = GPTModel(GPTConfig(vocab_size=50, context_length=8, emb_dim=256, n_heads=4, n_layers=8))
    assert abs(big.trf_blocks[0].att.W_query.weight.std().item() - 0.02) < 0.002
    assert abs(big.trf_blocks[0].att.out_proj.weight.std().item() - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)


def test_idx_longer_than_context_is_refused():
    model = GPTModel(TINY)
    with pytest.raises(ValueError, match="at most 16 tokens"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_forward_with_capture_properties():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    idx = torch.randint(0, 97, (2, 9))
    capture = model.forward_with_capture(idx, hidden_states=True)
    assert isinstance(capture, ForwardCapture)
    assert len(capture.attn_weights) == 2 and len(capture.hidden_states) == 3
    assert capture.hidden_states[0].shape == (2, 9, 24)
    assert torch.allclose(capture.logits, model(idx), atol=1e-5)  # the same pass, weights kept
    for weights in capture.attn_weights:
        assert weights.shape == (2, 3, 9, 9)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 9), atol=1e-5)
        assert torch.all(weights.triu(diagonal=1) == 0)
    # layer 0's weights, recomputed by hand from the embeddings
    att = model.trf_blocks[0].att
    x = model.trf_blocks[0].norm1(capture.hidden_states[0])
    q, k = att.split_heads(att.W_query(x)), att.split_heads(att.W_key(x))
    scores = (q @ k.transpose(2, 3) / (8 ** 0.5)).masked_fill(torch.ones(9, 9).triu(1).bool(), -torch.inf)
    assert torch.allclose(capture.attn_weights[0], torch.softmax(scores, -1), atol=1e-6)
    assert model.forward_with_capture(idx).hidden_states is None


def test_training_step_lowers_loss():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    ids = torch.randint(0, 97, (4, 9))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert model.out_head.weight is model.tok_emb.weight


def test_golden_logits_nano():
    torch.manual_seed(123)
    model = GPTModel(GPTConfig.preset("nano")).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[15496, 11, 314, 716]]))
    assert torch.allclose(logits[0, -1, :3], torch.tensor([0.1802, -0.2211, 0.2974]), atol=1e-4)


def test_estimate_memory():
    cfg = GPTConfig.preset("gpt2-small")
    assert estimate_memory(cfg) == {"weights": 124_439_808 * 4, "total": 124_439_808 * 4}
    assert estimate_memory(cfg, dtype=torch.bfloat16)["weights"] == 124_439_808 * 2
    train = estimate_memory(cfg, training=True, batch_size=2, context_length=256)
    assert train["gradients"] == train["weights"] and train["optimizer"] == 2 * train["weights"]
    assert 0 < train["activations"] < train["weights"] * 4
    assert train["total"] == sum(v for k, v in train.items() if k != "total")


def test_device_helpers():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert autocast_dtype("cpu") in (torch.bfloat16, None)
    assert describe_device("cpu").startswith("CPU (")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")


def test_pytorch_default_init_is_the_books_scale():
    cfg = GPTConfig(vocab_size=500, context_length=16, emb_dim=64, n_heads=4, n_layers=2, tie_weights=False)
    torch.manual_seed(0)
    model = GPTModel(cfg)
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 0.002  # GPT-2's init
    torch.manual_seed(0)
    model = GPTModel(replace(cfg, init="pytorch"))
    emb_std = model.tok_emb.weight.std().item()
    print("token embedding std", emb_std)
    assert abs(emb_std - 1.0) < 0.05  # nn.Embedding's normal(0, 1)
    ff_in = model.trf_blocks[0].ff.layers[0].weight  # (4 * 64, 64): uniform(-1/8, 1/8)
    assert ff_in.abs().max().item() <= 1 / 8 and ff_in.abs().max().item() > 0.12
    assert torch.equal(model.final_norm.scale, torch.ones(64))
    with pytest.raises(ValueError, match="init must be 'gpt2' or 'pytorch', got 'xavier'"):
        replace(cfg, init="xavier")


@pytest.mark.parametrize("switches", [{}, {"pos_embedding": False}, {"norm": "none"}, {"norm": "post"},
                                      {"pos_embedding": False, "norm": "none", "tie_weights": False}])
def test_parameter_breakdown_adds_up_with_the_ablation_switches(switches):
    model = GPTModel(replace(TINY, **switches))
    breakdown = dict(parameter_breakdown(model))
    assert sum(breakdown.values()) == model.num_parameters()
    assert breakdown["position embedding"] == (0 if switches.get("pos_embedding") is False else 16 * 24)
    assert breakdown["layer norms"] == (0 if switches.get("norm") == "none" else 2 * 24 * 5)
