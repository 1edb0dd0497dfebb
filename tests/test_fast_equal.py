"""Every speed-up of gpt_core.fast against the book function it replaces (as the book's ch03 tests do with one
parametrize over the attention implementations): same logits, same gradients, same generated ids.

One test per entry of ``gpt_core.fast.SPEED_UPS``; each check returns the largest difference it saw, which is
printed (``pytest -s``) and held under the tolerance stated next to it: float32 1e-5 (sums taken in another
order), bf16 5e-2 (a bf16 number has 8 bits of mantissa: 0.4% steps).
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gpt_core.ablations import ABLATIONS, apply_ablations
from gpt_core.attention import MultiHeadAttention
from gpt_core.fast import SPEED_UPS, is_fast, speed_up, speed_up_for_training
from gpt_core.fast.apply import FAST_CLASSES
from gpt_core.fast.layers import OneTokenLinear
from gpt_core.fast.memory import keep_freed_memory
from gpt_core.fast.model import FastDecoder
from gpt_core.fast.settings import use_plain
from gpt_core.generate import generate
from gpt_core.model import GELU, GPTConfig, GPTModel, LayerNorm
from gpt_core.train_config import TrainConfig

TINY = GPTConfig(vocab_size=97, context_length=24, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
FP32, BF16 = 1e-5, 5e-2  # tolerances


@pytest.fixture(autouse=True)
def fast_layer_on():
    with use_plain(False):  # whatever LLM_LAB_PLAIN says outside, these tests compare both layers
        yield


@contextlib.contextmanager
def threads(n: int):
    """The one-token path needs more than one thread; tiny models' tests may run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def largest(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float().to_dense() - b.detach().float().to_dense()).abs().max().item()


def book_and_fast(module: nn.Module, fast: bool | str = True) -> tuple[nn.Module, nn.Module]:
    """The module and a sped-up copy of it (speed_up, or speed_up_for_training when fast == "training")."""
    twin = copy.deepcopy(module)
    return module, speed_up_for_training(twin, "cpu") if fast == "training" else speed_up(twin)


def swap_class(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The module and a copy with its fast class (one module, no children swapped, no layout change)."""
    twin = copy.deepcopy(module)
    twin.__class__ = FAST_CLASSES[type(module)]
    return module, twin


def outputs_and_grads(module: nn.Module, *inputs: torch.Tensor, loss=lambda out: out.square().mean()):
    """Forward, backward: the output and every gradient (inputs first, then the parameters by name)."""
    inputs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    module.zero_grad(set_to_none=True)
    out = module(*inputs)
    loss(out).backward()
    grads = [x.grad for x in inputs if x.grad is not None]
    grads += [p.grad for _, p in sorted(module.named_parameters()) if p.grad is not None]
    return out, grads


def compare_forward_backward(book: nn.Module, fast: nn.Module, *inputs: torch.Tensor, loss=None) -> float:
    kwargs = {"loss": loss} if loss else {}
    out_book, grads_book = outputs_and_grads(book, *inputs, **kwargs)
    out_fast, grads_fast = outputs_and_grads(fast, *inputs, **kwargs)
    assert len(grads_book) == len(grads_fast) > 0
    return max([largest(out_book, out_fast)] + [largest(a, b) for a, b in zip(grads_book, grads_fast)])


def tiny_model(**overrides) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig(**{**TINY.to_dict(), **overrides})).eval()


def lm_loss(ids: torch.Tensor):
    """Next-token cross-entropy of a model's logits for ids[:, :-1] against ids[:, 1:]."""
    return lambda logits: F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


# ---------------------------------------------------------------- one check per speed-up
def check_layer_norm():
    torch.manual_seed(0)
    book, fast = swap_class(LayerNorm(64))
    with torch.no_grad():
        book.scale.uniform_(0.5, 1.5), book.shift.uniform_(-1, 1)
        fast.load_state_dict(book.state_dict())
    return compare_forward_backward(book, fast, 3 * torch.randn(2, 7, 64) + 1), FP32


def check_gelu():
    torch.manual_seed(0)
    return compare_forward_backward(*swap_class(GELU()), 3 * torch.randn(2, 7, 64)), FP32


def check_sdpa_attention():
    torch.manual_seed(0)
    book, fast = swap_class(MultiHeadAttention(32, 32, 16, dropout=0.0, num_heads=4, qkv_bias=True))
    return compare_forward_backward(book.train(), fast.train(), torch.randn(2, 16, 32)), FP32


def check_fp32_attention_for_bf16_training():
    """bf16 autocast on CPU: the book's attention runs in bf16, the fast one in float32; both near float32's."""
    torch.manual_seed(0)
    book, fast = swap_class(MultiHeadAttention(32, 32, 64, dropout=0.0, num_heads=4))
    x = torch.randn(4, 64, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        difference = compare_forward_backward(book.train(), fast.train(), x)
    return difference, BF16


def check_kv_cache():
    """Logits of the prompt then one token at a time through the KV caches = one book pass over everything."""
    book, fast = book_and_fast(tiny_model())
    ids = torch.randint(0, TINY.vocab_size, (2, 12))
    with torch.no_grad():
        caches = fast.new_kv_caches(batch_size=2)
        pieces = [fast(ids[:, :5], kv_caches=caches)] + [fast(ids[:, t:t + 1], kv_caches=caches) for t in range(5, 12)]
        difference = largest(torch.cat(pieces, dim=1), book(ids))
    assert caches[0].length == 12
    assert generate(fast, ids, 20).tolist() == generate(book, ids, 20).tolist()  # past the context (24) too
    return difference, FP32


def check_one_token_linear():
    torch.manual_seed(0)
    book = nn.Linear(64, 48)
    fast = speed_up(copy.deepcopy(book))  # OneTokenLinear, weight stored (in, out)
    assert type(fast) is OneTokenLinear and fast.weight.t().is_contiguous()
    x = torch.randn(1, 1, 64)
    with threads(2), torch.no_grad():
        difference = largest(fast(x), book(x))
        model_book, model_fast = book_and_fast(tiny_model())
        prompt = torch.tensor([[5, 6, 7]])
        assert generate(model_fast, prompt, 15).tolist() == generate(model_book, prompt, 15).tolist()
    return difference, FP32


def check_fast_layout():
    book, fast = book_and_fast(tiny_model())
    assert all(m.weight.t().is_contiguous() for m in fast.trf_blocks.modules() if isinstance(m, nn.Linear))
    ids = torch.randint(0, TINY.vocab_size, (2, 10))
    with torch.no_grad():
        return largest(fast(ids), book(ids)), FP32


def check_decoding_head():
    """FastDecoder (head copy, last position only; no cache here) = the book's model(window)[:, -1, :]."""
    book, fast = book_and_fast(tiny_model())
    window = torch.randint(0, TINY.vocab_size, (1, 9))
    with threads(2), torch.no_grad():
        difference = largest(FastDecoder(fast, max_new_tokens=1, use_cache=False)(window), book(window)[:, -1, :])
        assert generate(fast, window, 10, use_cache=False).tolist() == generate(book, window, 10).tolist()
    return difference, FP32


def check_sparse_embedding_grad():
    """The tied embedding's gradient: looked-up rows added to the head's dense gradient = the dense sum."""
    book, fast = book_and_fast(tiny_model(), "training")
    ids = torch.randint(0, TINY.vocab_size, (3, 10))
    difference = compare_forward_backward(book.train(), fast.train(), ids, loss=lm_loss(ids))
    assert fast.tok_emb.weight.grad.layout == torch.strided  # AdamW gets a dense gradient
    return difference, FP32


def check_training_layout():
    """A whole training step's loss and gradients, untied head (dense embedding gradient), dropout off."""
    book, fast = book_and_fast(tiny_model(tie_weights=False, qkv_bias=False), "training")
    assert all(p.is_contiguous() for p in fast.parameters())
    ids = torch.randint(0, TINY.vocab_size, (3, 10))
    return compare_forward_backward(book.train(), fast.train(), ids, loss=lm_loss(ids)), FP32


def check_keep_freed_memory():
    """Allocator tuning changes where memory comes from, never a number: the same step, bit for bit."""
    model = tiny_model()
    ids = torch.randint(0, TINY.vocab_size, (3, 10))
    before = outputs_and_grads(model, ids, loss=lm_loss(ids))
    keep_freed_memory()
    after = outputs_and_grads(model, ids, loss=lm_loss(ids))
    return max(largest(a, b) for a, b in zip([before[0], *before[1]], [after[0], *after[1]])), 0.0


CHECKS = {
    "fast.layers.FastLayerNorm": check_layer_norm,
    "fast.layers.FastGELU": check_gelu,
    "fast.attention.FastMultiHeadAttention": check_sdpa_attention,
    "fast.attention.use_fp32_attention": check_fp32_attention_for_bf16_training,
    "fast.attention.KVCache": check_kv_cache,
    "fast.layers.OneTokenLinear": check_one_token_linear,
    "fast.layers.use_fast_layout": check_fast_layout,
    "fast.model.head_for_decoding": check_decoding_head,
    "fast.model.sparse_embedding_grad": check_sparse_embedding_grad,
    "fast.layers.use_training_layout": check_training_layout,
    "fast.memory.keep_freed_memory": check_keep_freed_memory,
}


@pytest.mark.parametrize("entry", SPEED_UPS, ids=[entry.name for entry in SPEED_UPS])
def test_speed_up_equals_the_book(entry):
    difference, tolerance = CHECKS[entry.name]()
    print(f"{entry.name} vs {entry.replaces}: largest difference {difference:.2e} (tolerance {tolerance:g})")
    assert difference <= tolerance


def test_every_speed_up_is_checked_and_exists():
    import importlib

    assert sorted(CHECKS) == sorted(entry.name for entry in SPEED_UPS)
    for entry in SPEED_UPS:
        module_name, attribute = entry.name.rsplit(".", 1)
        assert hasattr(importlib.import_module(f"gpt_core.{module_name}"), attribute), entry.name


# ---------------------------------------------------------------- the model object stays the book's
@pytest.mark.parametrize("preset", ["tied", "book-like untied"])
@pytest.mark.parametrize("how", ["speed_up", "speed_up_for_training"])
def test_state_dict_keys_and_values_unchanged(preset, how):
    model = tiny_model() if preset == "tied" else tiny_model(tie_weights=False, qkv_bias=False, init="pytorch")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    same = speed_up(model) if how == "speed_up" else speed_up_for_training(model, "cpu")
    assert same is model and is_fast(model) and isinstance(model, GPTModel)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) and after[key].dtype == before[key].dtype for key in before)
    assert (model.out_head.weight is model.tok_emb.weight) == (preset == "tied")
    print(f"{how} ({preset}): {len(before)} tensors, every one equal")


def test_speed_up_is_idempotent_and_follows_the_dtype():
    model = speed_up(speed_up(tiny_model()))
    assert [type(m) for m in model.modules()] == [type(m) for m in speed_up(model).modules()]
    speed_up(model.to(torch.bfloat16))  # bf16: nn.Linear's own (out, in) order again
    assert all(m.weight.is_contiguous() for m in model.trf_blocks.modules() if isinstance(m, nn.Linear))
    prompt = torch.tensor([[1, 2, 3]])
    assert generate(model, prompt, 5).shape == (1, 8)


def test_plain_mode_makes_speed_up_a_no_op():
    model = tiny_model()
    classes = [type(m) for m in model.modules()]
    strides = [p.stride() for p in model.parameters()]
    with use_plain(True):
        assert speed_up(model) is model
        assert speed_up_for_training(model, "cpu") is model
    assert [type(m) for m in model.modules()] == classes and not is_fast(model)
    assert [p.stride() for p in model.parameters()] == strides


# ---------------------------------------------------------------- every ablation, book vs fast
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_gives_the_book_logits_gradients_and_ids(name):
    cfg, _, _ = apply_ablations([name], TINY, TrainConfig())
    torch.manual_seed(0)
    book, fast = book_and_fast(GPTModel(cfg).eval())
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        logits_difference = largest(fast(ids), book(ids))
    # training's speed-ups, forward and backward (eval mode: dropout would draw other random numbers)
    book_t, fast_t = book_and_fast(book, "training")
    training_difference = compare_forward_backward(book_t.eval(), fast_t.eval(), ids, loss=lm_loss(ids))
    print(f"{name}: logits {logits_difference:.2e}, training forward + backward {training_difference:.2e}")
    assert logits_difference <= FP32 and training_difference <= FP32
    prompt = ids[:1, :5]
    with threads(2), torch.no_grad():
        expected = generate(book, prompt, 25).tolist()  # 30 tokens: past the context (24) too
        assert generate(fast, prompt, 25, use_cache=True).tolist() == expected
        assert generate(fast, prompt, 25, use_cache=False).tolist() == expected
    assert len(expected[0]) == 30


def test_without_the_causal_mask_generation_keeps_no_kv_cache():
    cfg, _, _ = apply_ablations(["no-causal-mask"], TINY, TrainConfig())
    fast = speed_up(GPTModel(cfg).eval())
    assert FastDecoder(fast, max_new_tokens=5, use_cache=True).use_cache is False
    assert FastDecoder(speed_up(tiny_model()), max_new_tokens=5, use_cache=True).use_cache is True
    with pytest.raises(ValueError, match="Attention without the causal mask cannot use a KV cache"):
        fast(torch.tensor([[1, 2, 3]]), kv_caches=fast.new_kv_caches(batch_size=1))
