"""The fast layer's training rules: kept freed memory, the weight layouts, fused AdamW, fp32 short attention,
and when the embedding's gradient is sparse. Their results equal the book layer's: tests/test_fast_equal.py."""
from __future__ import annotations

import math
import platform
import resource

import pytest
import torch

from gpt_core.attention import MultiHeadAttention, causal_mask
from gpt_core.fast import speed_up, speed_up_for_training
from gpt_core.fast.attention import fused_attention, use_fp32_attention
from gpt_core.fast.memory import keep_freed_memory
from gpt_core.fast.model import sparse_embedding_grad
from gpt_core.fast.settings import use_plain
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.train import make_optimizer, train
from gpt_core.train_config import TrainConfig

TINY = GPTConfig(vocab_size=61, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)


@pytest.fixture(autouse=True)
def fast_layer_on():
    with use_plain(False):
        yield


def linear_weights(model: GPTModel) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight is not model.tok_emb.weight]


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's mallopt is Linux-only")
def test_kept_freed_memory_is_reused_without_page_faults():
    assert keep_freed_memory() is True
    block = 16 * 2**20 // 4  # 16 MB of float32, 4,096 pages
    for _ in range(10):
        torch.ones(block)  # the first blocks may still fault their pages in while the heap settles
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(block)  # allocated, written, freed
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print("page faults for 20 x 16 MB:", faults)
    assert faults < 2_000  # handing the blocks back to Linux would cost 20 x 4,096 = 81,920


def test_layouts_move_memory_order_and_keep_values():
    torch.manual_seed(0)
    model = GPTModel(TINY)  # the book's model: nn.Linear's own (out, in) order
    assert all(w.is_contiguous() for w in linear_weights(model))
    values = [w.detach().clone() for w in linear_weights(model)]
    speed_up(model)  # generation: float32 weights stored (in, out)
    assert all(w.t().is_contiguous() and not w.is_contiguous() for w in linear_weights(model))
    speed_up_for_training(model, "cpu")  # training: (out, in) again
    assert all(w.is_contiguous() for w in linear_weights(model))
    assert all(torch.equal(w, v) for w, v in zip(linear_weights(model), values))
    speed_up(model.to(torch.bfloat16))  # bf16 generation: (out, in), what the CPU's bf16 kernels read fastest
    assert all(w.is_contiguous() for w in linear_weights(model))


def test_train_keeps_the_training_layout_and_uses_fused_adamw():
    torch.manual_seed(0)
    model = speed_up_for_training(speed_up(GPTModel(TINY)), "cpu")
    ids = torch.randint(0, TINY.vocab_size, (400,)).tolist()
    config = TrainConfig(max_steps=3, batch_size=4, context_length=8, eval_every=0, autocast="off", device="cpu")
    events = list(train(model, ids, ids, config))
    assert events[-1].kind == "done"
    assert all(w.is_contiguous() for w in linear_weights(model))
    assert make_optimizer(model, config, torch.device("cpu")).defaults["fused"] is True


def test_short_bf16_attention_runs_in_fp32_on_cpu():
    def queries(tokens, dtype=torch.bfloat16, requires_grad=True):  # (B, n_heads, T, head_dim)
        return torch.zeros(2, 4, tokens, 8, dtype=dtype, requires_grad=requires_grad)

    assert use_fp32_attention(queries(64)) and use_fp32_attention(queries(256))
    assert not use_fp32_attention(queries(64, requires_grad=False))  # inference: no gradient
    assert not use_fp32_attention(queries(512))  # long sequences: bf16 is faster
    assert not use_fp32_attention(queries(64, dtype=torch.float32))  # already float32


def explicit_attention(queries, keys, values):
    """The book's maths (MultiHeadAttention.forward's middle): scores, mask, softmax, weighted sum."""
    scores = queries @ keys.transpose(2, 3)
    scores = scores.masked_fill(causal_mask(queries.shape[2], keys.shape[2]), -torch.inf)
    return torch.softmax(scores / math.sqrt(queries.shape[-1]), dim=-1) @ values


def test_fp32_attention_under_autocast_matches_the_explicit_maths():
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_in=32, d_out=32, context_length=16, dropout=0.0, num_heads=4)
    x = torch.randn(2, 16, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        queries, keys, values = (attention.split_heads(layer(x)) for layer in
                                 (attention.W_query, attention.W_key, attention.W_value))
        fused = fused_attention(queries, keys, values)
    assert queries.dtype == torch.bfloat16 and fused.dtype == torch.float32  # bf16 in, computed in float32
    explicit = explicit_attention(queries.float(), keys.float(), values.float())
    diff = (fused - explicit).abs().max().item()
    print("largest difference", diff)
    assert diff < 1e-5
    fused.sum().backward()
    assert x.grad is not None and x.grad.shape == (2, 16, 32)


def test_embedding_gradient_is_sparse_only_for_a_tied_head_in_training():
    torch.manual_seed(0)
    model = speed_up_for_training(GPTModel(TINY), "cpu")
    ids = torch.tensor([[1, 2, 3]])
    assert sparse_embedding_grad(model, ids)
    with torch.no_grad():
        assert not sparse_embedding_grad(model, ids)
    model.out_head = torch.nn.Linear(TINY.emb_dim, 2)  # a classifier's head: the tie is broken
    assert not sparse_embedding_grad(model, ids)
    model(ids)[:, -1].sum().backward()
    assert model.tok_emb.weight.grad.layout == torch.strided


def test_the_decoding_head_follows_a_fused_adamw_step():
    """CPU's fused AdamW writes the weights without moving their version counters; generation after a step
    must still read the new head (samples during a run), not the copy made before it."""
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=64, context_length=16, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0))
    from gpt_core.fast.model import head_for_decoding

    before = head_for_decoding(model).clone()
    version = model.out_head.weight._version
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    ids = torch.randint(0, 64, (2, 8))
    torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    optimizer.step()
    after = head_for_decoding(model)
    print("version before/after the fused step:", version, model.out_head.weight._version,
          "largest change of the head:", (after - before).abs().max().item())
    assert torch.equal(after, model.out_head.weight.t()) and not torch.equal(after, before)
