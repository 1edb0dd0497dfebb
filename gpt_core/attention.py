"""The attention ladder of chapter 3, one rung at a time.

1. `simple_attention`: no trainable weights, every token attends to every token.
2. `SelfAttention`: trainable query/key/value projections, scaled dot products.
3. `CausalAttention`: a token may only look at itself and the tokens before it (mask + dropout).
4. `MultiHeadAttentionWrapper`: several causal heads side by side, outputs concatenated.
5. `MultiHeadAttention`: the same thing done efficiently with one projection split into heads;
   this is the module the GPT model uses. (gpt_core.fast.attention swaps in PyTorch's fused kernel and a
   KV cache from outside, tested equal to this one.)

Every module's `forward(x, return_weights=False)` returns the context vectors, or
`(context, attn_weights)` when `return_weights=True`. The weights returned are the softmax output,
before dropout, so every row sums to 1.

Worked example (3 tokens, 2 dims):
    >>> inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> attn_weights, context_vecs = simple_attention(inputs)
    >>> attn_weights[0]          # token 0 looks most at itself and at token 2
    tensor([0.4223, 0.1554, 0.4223])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def causal_mask(num_queries: int, num_keys: int, device=None) -> torch.Tensor:
    """True where a query must NOT look: keys that come after the query's own position.

    The queries are the last `num_queries` of the `num_keys` positions (this matters when the keys of
    earlier tokens are kept, as gpt_core.fast's KV cache does).
        >>> causal_mask(3, 3).int()
        tensor([[0, 1, 1],
                [0, 0, 1],
                [0, 0, 0]], dtype=torch.int32)
    """
    offset = num_keys - num_queries
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).triu(diagonal=1 + offset)


# ---------------------------------------------------------------- rung 1: no trainable weights
def simple_attention(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (T, d) -> (attn_weights (T, T), context_vecs (T, d)).

    Score = dot product of two token vectors; softmax turns each row of scores into weights;
    each context vector is the weighted sum of all the input vectors.
    """
    attn_scores = inputs @ inputs.T  # (T, T)
    attn_weights = torch.softmax(attn_scores, dim=-1)  # each row sums to 1
    context_vecs = attn_weights @ inputs  # (T, d)
    return attn_weights, context_vecs


# ---------------------------------------------------------------- rung 2: queries, keys, values
class SelfAttention(nn.Module):
    """Trainable self-attention (one head, no mask). x: (T, d_in) or (B, T, d_in)."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        queries = self.W_query(x)  # (B, T, d_out)
        keys = self.W_key(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(-2, -1)  # (B, T, T)
        attn_weights = torch.softmax(attn_scores / math.sqrt(keys.shape[-1]), dim=-1)
        context_vec = attn_weights @ values  # (B, T, d_out)
        return (context_vec, attn_weights) if return_weights else context_vec


# ---------------------------------------------------------------- rung 3: hide the future
class CausalAttention(nn.Module):
    """Self-attention where token t only sees tokens 0..t, with dropout on the attention weights."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # 1 above the diagonal = "in the future": those scores become -inf before the softmax
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1),
                             persistent=False)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        num_tokens = x.shape[-2]
        queries = self.W_query(x)  # (B, T, d_out)
        keys = self.W_key(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(-2, -1)  # (B, T, T)
        attn_scores = attn_scores.masked_fill(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
        attn_weights = torch.softmax(attn_scores / math.sqrt(keys.shape[-1]), dim=-1)
        context_vec = self.dropout(attn_weights) @ values  # (B, T, d_out)
        return (context_vec, attn_weights) if return_weights else context_vec


# ---------------------------------------------------------------- rung 4: several heads, stacked
class MultiHeadAttentionWrapper(nn.Module):
    """`num_heads` independent CausalAttention heads; outputs concatenated to (B, T, num_heads * d_out)."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
        )

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        results = [head(x, return_weights=True) for head in self.heads]
        context_vec = torch.cat([context for context, _ in results], dim=-1)  # (B, T, num_heads * d_out)
        if not return_weights:
            return context_vec
        attn_weights = torch.stack([weights for _, weights in results], dim=-3)  # (B, num_heads, T, T)
        return context_vec, attn_weights


# ---------------------------------------------------------------- rung 5: heads by reshaping
class MultiHeadAttention(nn.Module):
    """Causal multi-head attention: one W_query/W_key/W_value of width d_out, split into `num_heads` heads.

    The same maths as MultiHeadAttentionWrapper's stacked heads, done with one matrix multiplication per
    projection and a reshape. This is the module the GPT model uses. `causal=False` drops the mask (an
    ablation: every token then sees the whole sequence, as SelfAttention does).

        >>> _ = torch.manual_seed(123)
        >>> mha = MultiHeadAttention(d_in=3, d_out=4, context_length=6, dropout=0.0, num_heads=2)
        >>> context, weights = mha(torch.rand(1, 6, 3), return_weights=True)
        >>> context.shape, weights.shape    # (B, T, d_out), (B, num_heads, T, T)
        (torch.Size([1, 6, 4]), torch.Size([1, 2, 6, 6]))
        >>> weights[0, 0, 0, 1:].sum().item()   # the first token sees only itself
        0.0
        >>> mha.causal = False                  # no mask: it sees the later tokens too
        >>> mha(torch.rand(1, 6, 3), return_weights=True)[1][0, 0, 0, 1:].sum().item() > 0.5
        True
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = False, causal: bool = True):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads}).")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads  # each head works in a d_out / num_heads slice
        self.context_length = context_length
        self.causal = causal  # False (an ablation): no mask, every token also sees the tokens after it
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes the heads' outputs
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_out) -> (B, num_heads, T, head_dim): unroll the last dim, then put the heads first."""
        batch, num_tokens, _ = x.shape
        return x.view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """x (B, T, d_in) -> context (B, T, d_out); with return_weights, also the weights (B, num_heads, T, T)."""
        batch, num_tokens, _ = x.shape
        queries = self.split_heads(self.W_query(x))  # (B, num_heads, T, head_dim)
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))

        attn_scores = queries @ keys.transpose(2, 3)  # (B, num_heads, T, T): a dot product per head
        if self.causal:  # hide the future (skipped when causal=False)
            mask = causal_mask(num_tokens, num_tokens, device=x.device)  # True above the diagonal: the future
            attn_scores = attn_scores.masked_fill(mask, -torch.inf)
        attn_weights = torch.softmax(attn_scores / math.sqrt(self.head_dim), dim=-1)  # rows sum to 1
        context_vec = self.dropout(attn_weights) @ values  # (B, num_heads, T, head_dim)

        context_vec = context_vec.transpose(1, 2).reshape(batch, num_tokens, self.d_out)  # heads side by side
        context_vec = self.out_proj(context_vec)  # (B, T, d_out)
        return (context_vec, attn_weights) if return_weights else context_vec


# ---------------------------------------------------------------- every stage, for the Attention tab
@dataclass
class AttentionSteps:
    """Each intermediate of one single-head attention pass (no batch dim if the input had none)."""

    queries: torch.Tensor  # (T, d_out)
    keys: torch.Tensor  # (T, d_out)
    values: torch.Tensor  # (T, d_out)
    scores: torch.Tensor  # (T, T) raw dot products, before mask and scaling
    masked_scores: torch.Tensor  # (T, T) with -inf above the diagonal when causal
    weights: torch.Tensor  # (T, T) softmax(masked_scores / sqrt(d_out)), rows sum to 1
    context: torch.Tensor  # (T, d_out) weights @ values


@torch.no_grad()
def attention_steps(module: SelfAttention | CausalAttention, x: torch.Tensor, causal: bool = True) -> AttentionSteps:
    """Run a single-head module step by step on x (T, d_in) or (B, T, d_in); no dropout.

    `causal=False` shows the scores without the mask (what SelfAttention does).
    """
    if not isinstance(module, SelfAttention | CausalAttention):
        raise ValueError(f"attention_steps needs a SelfAttention or CausalAttention, got {type(module).__name__}.")
    queries, keys, values = module.W_query(x), module.W_key(x), module.W_value(x)
    scores = queries @ keys.transpose(-2, -1)
    num_tokens = x.shape[-2]
    masked_scores = scores.masked_fill(causal_mask(num_tokens, num_tokens, x.device), -torch.inf) if causal else scores
    weights = torch.softmax(masked_scores / math.sqrt(keys.shape[-1]), dim=-1)
    context = weights @ values
    return AttentionSteps(queries, keys, values, scores, masked_scores, weights, context)
