"""The attention ladder: every rung's shapes, masks, weights, and the agreement between rungs.

The fast attention (gpt_core.fast.attention) is checked against these modules in tests/test_fast_equal.py."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.attention import (
    AttentionSteps,
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention,
    attention_steps,
    causal_mask,
    simple_attention,
)

# the book's six-word example: "Your journey starts with one step"
INPUTS = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                       [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])


def test_simple_attention_matches_book_values():
    attn_weights, context_vecs = simple_attention(INPUTS)
    assert attn_weights.shape == (6, 6)
    # chapter 3: the weights of query "journey" and its context vector
    expected_row = torch.tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])
    assert torch.allclose(attn_weights[1], expected_row, atol=1e-4)
    assert torch.allclose(context_vecs[1], torch.tensor([0.4419, 0.6515, 0.5683]), atol=1e-4)
    assert torch.allclose(attn_weights.sum(-1), torch.ones(6))


def test_causal_mask_with_offset_for_kv_cache():
    # 2 new queries at positions 3 and 4 of 5 keys: query 3 may not see key 4
    assert causal_mask(2, 5).int().tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]


def test_self_attention_shapes_and_scaling():
    torch.manual_seed(123)
    sa = SelfAttention(3, 2)
    context, weights = sa(INPUTS, return_weights=True)
    assert context.shape == (6, 2) and weights.shape == (6, 6)
    queries, keys = sa.W_query(INPUTS), sa.W_key(INPUTS)
    expected = torch.softmax(queries @ keys.T / math.sqrt(2), dim=-1)
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.equal(sa(INPUTS), context)


def test_causal_attention_has_zeros_above_diagonal():
    torch.manual_seed(123)
    ca = CausalAttention(3, 2, context_length=6, dropout=0.0)
    batch = torch.stack([INPUTS, INPUTS])
    context, weights = ca(batch, return_weights=True)
    assert context.shape == (2, 6, 2) and weights.shape == (2, 6, 6)
    assert torch.all(weights.triu(diagonal=1) == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 6))
    assert "mask" in dict(ca.named_buffers())


def test_causal_attention_dropout_only_in_training():
    torch.manual_seed(0)
    ca = CausalAttention(3, 4, context_length=6, dropout=0.5)
    x = INPUTS.unsqueeze(0)
    ca.eval()
    assert torch.equal(ca(x), ca(x))
    ca.train()
    assert not torch.equal(ca(x), ca(x))


def _copy_wrapper_into_mha(wrapper: MultiHeadAttentionWrapper, mha: MultiHeadAttention):
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            stacked = torch.cat([getattr(head, name).weight for head in wrapper.heads], dim=0)
            getattr(mha, name).weight.copy_(stacked)
        mha.out_proj.weight.copy_(torch.eye(mha.d_out))
        mha.out_proj.bias.zero_()


@pytest.mark.parametrize("num_heads, head_dim", [(2, 4), (3, 5)])
def test_wrapper_equals_multi_head_attention(num_heads, head_dim):
    torch.manual_seed(1)
    d_in, tokens = 7, 9
    wrapper = MultiHeadAttentionWrapper(d_in, head_dim, tokens, 0.0, num_heads)
    mha = MultiHeadAttention(d_in, num_heads * head_dim, tokens, 0.0, num_heads)
    _copy_wrapper_into_mha(wrapper, mha)
    x = torch.randn(2, tokens, d_in)
    ctx_w, weights_w = wrapper(x, return_weights=True)
    ctx_m, weights_m = mha(x, return_weights=True)
    assert ctx_w.shape == ctx_m.shape == (2, tokens, num_heads * head_dim)
    assert weights_w.shape == weights_m.shape == (2, num_heads, tokens, tokens)
    diff = (ctx_w - ctx_m).abs().max().item()
    print(f"wrapper vs MHA max diff {diff:.2e}")
    assert diff < 1e-5
    assert torch.allclose(weights_w, weights_m, atol=1e-6)
    assert torch.equal(mha(x), ctx_m)  # the same pass without returning the weights


@settings(max_examples=25, deadline=None)
@given(num_heads=st.integers(1, 4), head_dim=st.integers(1, 8), tokens=st.integers(1, 12),
       batch=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_multi_head_weights_are_causal_rows_that_sum_to_one(num_heads, head_dim, tokens, batch, seed):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(5, num_heads * head_dim, 16, dropout=0.1, num_heads=num_heads, qkv_bias=True).eval()
    context, weights = mha(torch.randn(batch, tokens, 5), return_weights=True)
    assert context.shape == (batch, tokens, num_heads * head_dim)
    assert torch.allclose(weights.sum(-1), torch.ones(batch, num_heads, tokens), atol=1e-5)
    assert torch.all(weights.triu(diagonal=1) == 0)


def test_mha_rejects_uneven_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(8, 10, 4, 0.0, num_heads=3)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_steps_every_stage(causal):
    torch.manual_seed(123)
    ca = CausalAttention(3, 2, context_length=6, dropout=0.0)
    steps = attention_steps(ca, INPUTS, causal=causal)
    assert isinstance(steps, AttentionSteps)
    assert steps.scores.shape == steps.weights.shape == (6, 6)
    assert steps.queries.shape == steps.context.shape == (6, 2)
    assert torch.allclose(steps.scores, steps.queries @ steps.keys.T)
    above = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    if causal:
        assert torch.isinf(steps.masked_scores[above]).all()
        assert torch.allclose(steps.context, ca(INPUTS.unsqueeze(0))[0], atol=1e-6)
    else:
        assert torch.equal(steps.masked_scores, steps.scores)
        sa = SelfAttention(3, 2)
        sa.load_state_dict(ca.state_dict())
        assert torch.allclose(steps.context, sa(INPUTS), atol=1e-6)
    assert torch.allclose(steps.weights.sum(-1), torch.ones(6))


def test_attention_steps_refuses_multi_head():
    with pytest.raises(ValueError, match="SelfAttention or CausalAttention"):
        attention_steps(MultiHeadAttention(4, 4, 4, 0.0, 2), torch.zeros(3, 4))
