"""Fast multi-head attention: PyTorch's fused kernel, a KV cache for generation, fp32 for short bf16 training.

``FastMultiHeadAttention`` subclasses the book's ``gpt_core.attention.MultiHeadAttention`` and overrides only
``forward``; gpt_core.fast.speed_up installs it by swapping ``module.__class__`` (the weights stay the book's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpt_core.attention import MultiHeadAttention, causal_mask


@dataclass
class KVCache:
    """Pre-allocated keys and values of one layer (gpt-fast style), filled as tokens are generated.

    Replaces the book's way of generating, which runs the whole text through the model for every new token
    (chapter 4's generate_text_simple): with the keys and values of the earlier tokens kept, a new token
    costs one position of work. keys, values: (B, n_heads, max_len, head_dim); `length` = positions filled.

        >>> cache = KVCache.allocate(batch_size=1, n_heads=2, max_len=8, head_dim=4)
        >>> keys, values = cache.update(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
        >>> keys.shape, cache.length
        (torch.Size([1, 2, 3, 4]), 3)
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


def causal_sdpa(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                dropout_p: float = 0.0) -> torch.Tensor:
    """scaled_dot_product_attention with the causal mask that fits the numbers of queries and keys.

    queries (B, n_heads, T_new, head_dim), keys/values (B, n_heads, T_keys, head_dim): the queries are the
    last T_new positions (with a KV cache the keys also hold the earlier tokens).
    """
    num_queries, num_keys = queries.shape[2], keys.shape[2]
    if num_queries == 1:  # one new token with a cache: it may look at everything
        return F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p)
    if num_queries == num_keys:
        return F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p, is_causal=True)
    allowed = ~causal_mask(num_queries, num_keys, device=queries.device)
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed, dropout_p=dropout_p)


def fused_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    dropout_p: float = 0.0, causal: bool = True) -> torch.Tensor:
    """`causal_sdpa` (causal=False: scaled_dot_product_attention with no mask), in float32 when
    `use_fp32_attention` says so (the result is then float32)."""
    attend = causal_sdpa if causal else F.scaled_dot_product_attention
    if use_fp32_attention(queries):
        with torch.autocast("cpu", enabled=False):  # autocast would turn float32 back into bf16
            return attend(queries.float(), keys.float(), values.float(), dropout_p=dropout_p)
    return attend(queries, keys, values, dropout_p=dropout_p)


class FastMultiHeadAttention(MultiHeadAttention):
    """Replaces ``MultiHeadAttention.forward``'s scores / mask / softmax / dropout / weighted sum by
    PyTorch's fused ``scaled_dot_product_attention`` (`fused_attention`): the same maths without keeping
    the (T x T) score and weight matrices (flash attention on CPU and GPU), and with a KV cache
    (`kv_cache=`) for generation. Differences: dropout draws other random numbers (same rate); with
    `return_weights=True` (the app's views) it runs the book's forward, which computes the weights.
    `causal=False` (an ablation) runs the kernel without a mask, and refuses a KV cache: there every token's
    keys and values in later layers change when a token is added, so nothing could be kept.

    Measured (the whole module, forward + backward, 2 CPU cores, float32): nano's 16 x 64 tokens 7.0 ms ->
    6.6 ms; GPT-2 small's 256 tokens 36 ms -> 30 ms (the projections around it are the same matmuls).
    """

    def forward(self, x: torch.Tensor, return_weights: bool = False, kv_cache: KVCache | None = None):
        if return_weights:
            if kv_cache is not None:
                raise ValueError("Attention weights come from the book's forward pass, which keeps no KV cache.")
            return super().forward(x, return_weights=True)
        batch, num_tokens, _ = x.shape
        queries = self.split_heads(self.W_query(x))  # (B, num_heads, T, head_dim)
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))
        if kv_cache is not None:
            if not self.causal:
                raise ValueError("Attention without the causal mask cannot use a KV cache: every new token "
                                 "changes what the earlier tokens see. Generate with use_cache=False.")
            keys, values = kv_cache.update(keys, values)  # (B, num_heads, past + T, head_dim)
        dropout_p = self.dropout.p if self.training else 0.0
        context_vec = fused_attention(queries, keys, values, dropout_p, self.causal)  # (B, num_heads, T, head_dim)
        context_vec = context_vec.transpose(1, 2).reshape(batch, num_tokens, self.d_out)
        return self.out_proj(context_vec)  # (B, T, d_out)
