"""The CPU training fast paths: kept freed memory, the training weight layout, fused AdamW, fp32 short attention."""
from __future__ import annotations

import platform
import resource

import pytest
import torch

from gpt_core.attention import MultiHeadAttention, use_fp32_attention
from gpt_core.device import keep_freed_memory
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.train import TrainConfig, make_optimizer, train

TINY = GPTConfig(vocab_size=61, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)


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


def test_training_layout_stores_weights_out_in_and_keeps_values():
    torch.manual_seed(0)
    model = GPTModel(TINY)  # starts in the generation layout: float32 weights stored (in, out)
    assert all(w.t().is_contiguous() and not w.is_contiguous() for w in linear_weights(model))
    values = [w.detach().clone() for w in linear_weights(model)]
    model.use_training_layout()
    assert all(w.is_contiguous() for w in linear_weights(model))
    assert all(torch.equal(w, v) for w, v in zip(linear_weights(model), values))
    model.use_fast_layout()
    assert all(w.t().is_contiguous() for w in linear_weights(model))


def test_train_uses_the_training_layout_and_fused_adamw():
    torch.manual_seed(0)
    model = GPTModel(TINY)
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


def test_fp32_attention_under_autocast_matches_the_explicit_maths():
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_in=32, d_out=32, context_length=16, dropout=0.0, num_heads=4)
    x = torch.randn(2, 16, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        queries, keys, values = (attention.split_heads(layer(x)) for layer in
                                 (attention.W_query, attention.W_key, attention.W_value))
        fused = attention.fused_attention(queries, keys, values)
    assert queries.dtype == torch.bfloat16 and fused.dtype == torch.float32  # bf16 in, computed in float32
    explicit, _ = attention.explicit_attention(queries.float(), keys.float(), values.float())
    diff = (fused - explicit).abs().max().item()
    print("largest difference", diff)
    assert diff < 1e-5
    fused.sum().backward()
    assert x.grad is not None and x.grad.shape == (2, 16, 32)


def test_tied_embedding_gets_a_dense_gradient_equal_to_the_dense_path(monkeypatch):
    torch.manual_seed(0)
    model = GPTModel(TINY)
    ids = torch.randint(0, TINY.vocab_size, (3, 10))
    assert model.sparse_embedding_grad(ids)

    def tok_emb_grad() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        model(ids).square().mean().backward()
        return model.tok_emb.weight.grad

    sparse_path = tok_emb_grad()
    assert sparse_path.layout == torch.strided  # the head's dense gradient plus the looked-up rows
    monkeypatch.setattr(GPTModel, "sparse_embedding_grad", lambda self, idx: False)
    dense_path = tok_emb_grad()
    diff = (sparse_path - dense_path).abs().max().item()
    print("largest difference", diff)
    assert diff < 1e-7


def test_embedding_gradient_stays_dense_when_untied_or_not_training():
    torch.manual_seed(0)
    model = GPTModel(TINY)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert not model.sparse_embedding_grad(ids)
    model.out_head = torch.nn.Linear(TINY.emb_dim, 2)  # a classifier's head: the tie is broken
    assert not model.sparse_embedding_grad(ids)
    model(ids)[:, -1].sum().backward()
    assert model.tok_emb.weight.grad.layout == torch.strided
