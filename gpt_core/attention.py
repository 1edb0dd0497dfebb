"""The attention ladder of chapter 3, one rung at a time.

1. `simple_attention`: no trainable weights, every token attends to every token.
2. `SelfAttention`: trainable query/key/value projections, scaled dot products.
3. `CausalAttention`: a token may only look at itself and the tokens before it (mask + dropout).
4. `MultiHeadAttentionWrapper`: several causal heads side by side, outputs concatenated.
5. `MultiHeadAttention`: the same thing done efficiently with one projection split into heads;
   this is the module the GPT model uses (fast path: `scaled_dot_product_attention`, KV cache,
   and `Linear`, an nn.Linear that shares one token's matrix-vector product between the CPU threads).

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
import torch.nn.functional as F
from torch import nn


def causal_mask(num_queries: int, num_keys: int, device=None) -> torch.Tensor:
    """True where a query must NOT look: keys that come after the query's own position.

    The queries are the last `num_queries` of the `num_keys` positions (this matters with a KV cache).
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


# ---------------------------------------------------------------- one token at a time: generation's fast path
def one_token_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (1, in) @ weight_t (in, out) + bias -> (1, out), the work shared out between the CPU threads.

    For a single token a linear layer is a matrix-vector product: each weight is read from memory once
    and used once, so its speed is the memory bandwidth. One BLAS matrix-vector call runs on one core,
    which on a 2-core CPU reads 20-28 GB/s. Here the rows of weight_t (one per input feature) are cut
    into one block per thread; a batched matmul lets each thread multiply its slice of x by its block,
    reading its own stretch of memory, and the partial sums are added: 35-47 GB/s together, and GPT-2
    small generates ~1.6x faster than with F.linear.

        weight_t (in, out) -> (parts, in / parts, out)   consecutive rows, a view, no copy
        x (1, in) -> (parts, 1, in / parts)
        bmm -> partial sums (parts, 1, out) -> add them up -> (1, out)

    `in` must be divisible by `parts` (one block per thread: torch.get_num_threads()).
    """
    d_in, d_out = weight_t.shape
    parts = torch.get_num_threads()
    blocks = weight_t.view(parts, d_in // parts, d_out)  # (parts, in / parts, out)
    x_pieces = x.reshape(parts, 1, d_in // parts)  # (parts, 1, in / parts)
    partial_sums = torch.bmm(x_pieces, blocks)  # (parts, 1, out)
    out = partial_sums.sum(dim=0)  # (1, out)
    return out if bias is None else out.add_(bias)


def use_one_token_linear(x: torch.Tensor, weight_t: torch.Tensor) -> bool:
    """True when `one_token_linear` is the faster choice: one token, a multi-core CPU, float32 weights laid
    out (in, out) in memory, and `in` divisible by the thread count. Elsewhere F.linear is as fast or faster.
    """
    parts = torch.get_num_threads()
    return (x.device.type == "cpu" and parts > 1 and x.shape[:-1].numel() == 1 and weight_t.is_contiguous()
            and weight_t.dtype == torch.float32 and weight_t.shape[0] % parts == 0)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same maths), with `one_token_linear` when a single token comes in.

    The fast path needs the weight stored (in, out) in memory (weight.t() contiguous), so that each
    thread's block is one stretch of memory: GPTModel.use_fast_layout() stores it that way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight_t = self.weight.t()  # (in, out)
        if use_one_token_linear(x, weight_t):
            return one_token_linear(x, weight_t, self.bias).view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)


# ---------------------------------------------------------------- rung 5: heads by reshaping
@dataclass
class KVCache:
    """Pre-allocated keys and values of one layer (gpt-fast style), filled as tokens are generated.

    keys, values: (B, n_heads, max_len, head_dim); `length` = how many positions are filled.
    """

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0

    @classmethod
    def allocate(cls, batch_size: int, n_heads: int, max_len: int, head_dim: int,
                 dtype=torch.float32, device=None) -> KVCache:
        shape = (batch_size, n_heads, max_len, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def update(self, new_keys: torch.Tensor, new_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, n_heads, T, head_dim) new keys/values; return all keys/values so far (views, no copy)."""
        start, end = self.length, self.length + new_keys.shape[2]
        if end > self.max_len:
            raise ValueError(f"The KV cache holds {self.max_len} positions; cannot add {end - self.max_len} more.")
        self.keys[:, :, start:end] = new_keys
        self.values[:, :, start:end] = new_values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


def use_fp32_attention(queries: torch.Tensor) -> bool:
    """True when bf16 attention should run in float32: training on a CPU, with sequences of <= 256 tokens.

    PyTorch's CPU flash-attention backward pass is slower in bf16 than in float32 for short sequences
    (2 cores, head_dim 32: 16 x 64 tokens 3.9 ms vs 1.4 ms; 8 x 128 tokens 4.3 ms vs 2.1 ms; even at 256;
    from 512 tokens on bf16 wins). The matrix multiplications around it stay in bf16 under autocast.
    """
    return (queries.device.type == "cpu" and queries.dtype == torch.bfloat16 and queries.requires_grad
            and queries.shape[2] <= 256)


class MultiHeadAttention(nn.Module):
    """Causal multi-head attention: one W_query/W_key/W_value of width d_out split into `num_heads` heads.

    With `return_weights=True` the scores are computed step by step (the book's maths); otherwise
    PyTorch's fused `scaled_dot_product_attention` computes the same thing faster.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int,
                 qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads}).")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)  # nn.Linear with a one-token fast path
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = Linear(d_out, d_out)  # mixes the heads' outputs
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_out) -> (B, num_heads, T, head_dim)"""
        batch, num_tokens, _ = x.shape
        return x.view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, return_weights: bool = False, kv_cache: KVCache | None = None):
        batch, num_tokens, _ = x.shape
        queries = self.split_heads(self.W_query(x))  # (B, n_heads, T, head_dim)
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))
        if kv_cache is not None:
            keys, values = kv_cache.update(keys, values)  # (B, n_heads, past + T, head_dim)

        if return_weights:
            context_vec, attn_weights = self.explicit_attention(queries, keys, values)
        else:
            context_vec, attn_weights = self.fused_attention(queries, keys, values), None

        context_vec = context_vec.transpose(1, 2).reshape(batch, num_tokens, self.d_out)  # (B, T, d_out)
        context_vec = self.out_proj(context_vec)
        return (context_vec, attn_weights) if return_weights else context_vec

    def explicit_attention(self, queries, keys, values):
        """The book's maths: scores, mask, softmax, dropout, weighted sum. Returns (context, weights)."""
        attn_scores = queries @ keys.transpose(2, 3)  # (B, n_heads, T, T_keys)
        mask = causal_mask(queries.shape[2], keys.shape[2], device=queries.device)
        attn_scores = attn_scores.masked_fill(mask, -torch.inf)
        attn_weights = torch.softmax(attn_scores / math.sqrt(self.head_dim), dim=-1)
        context_vec = self.dropout(attn_weights) @ values  # (B, n_heads, T, head_dim)
        return context_vec, attn_weights

    def fused_attention(self, queries, keys, values):
        """Same result as `explicit_attention`, by PyTorch's fused kernel (no T x T matrix kept)."""
        if use_fp32_attention(queries):
            with torch.autocast("cpu", enabled=False):  # autocast would turn float32 back into bf16
                return self.causal_sdpa(queries.float(), keys.float(), values.float())
        return self.causal_sdpa(queries, keys, values)

    def causal_sdpa(self, queries, keys, values):
        """scaled_dot_product_attention with the causal mask that fits the numbers of queries and keys."""
        dropout_p = self.dropout.p if self.training else 0.0
        num_queries, num_keys = queries.shape[2], keys.shape[2]
        if num_queries == 1:  # one new token with a cache: it may look at everything
            return F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p)
        if num_queries == num_keys:
            return F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p, is_causal=True)
        allowed = ~causal_mask(num_queries, num_keys, device=queries.device)
        return F.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed, dropout_p=dropout_p)


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
