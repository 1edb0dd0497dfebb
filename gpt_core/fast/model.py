"""The fast GPT model: KV-cache forward pass, sparse embedding gradient, a cached decoding head.

``FastTransformerBlock`` and ``FastGPTModel`` subclass the book's ``TransformerBlock`` and ``GPTModel`` and add
or override forward passes only; gpt_core.fast.speed_up installs them by swapping ``module.__class__``. A
model sped up this way is still a GPTModel with the book's parameters: ``model(idx)`` gives the same logits.
``FastGPTModel.start_decoding`` is what gpt_core.generate's loop asks a sped-up model for: `FastDecoder`.
"""

from __future__ import annotations

import weakref
from itertools import repeat

import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from gpt_core.fast.attention import KVCache
from gpt_core.fast.layers import one_token_linear, use_one_token_linear
from gpt_core.model import GPTModel, TransformerBlock


class FastTransformerBlock(TransformerBlock):
    """``TransformerBlock.forward`` with a KV cache handed on to its attention (`FastMultiHeadAttention`);
    otherwise the same steps (the book's `norm_before` / `add_shortcut`, so every norm placement and the
    no-shortcut ablation too). Replaces the book block's forward only so that the cache can pass."""

    def forward(self, x: torch.Tensor, return_weights: bool = False, kv_cache: KVCache | None = None):
        if return_weights:
            return super().forward(x, return_weights=True)
        attn_out = self.att(self.norm_before(x, self.norm1), kv_cache=kv_cache)
        x = self.add_shortcut(x, attn_out, self.norm1)  # shortcut around attention
        return self.add_shortcut(x, self.ff(self.norm_before(x, self.norm2)), self.norm2)  # around the feed-forward


def sparse_embedding_grad(model: GPTModel, idx: torch.Tensor) -> bool:
    """True when the token embedding should send its gradient as rows (sparse): CPU training, tied head.

    Replaces the dense gradient of the book's ``self.tok_emb(idx)`` (in ``GPTModel.embed``). The gradient of
    a lookup table is zero except in the rows of the tokens that were looked up. As a dense matrix it is
    mostly zeros (50,257 x 768 for GPT-2: 154 MB to fill, then to add to the head's gradient). With a tied
    head the shared matrix gets the head's dense gradient anyway, so sending only the looked-up rows gives
    the same sum with two fewer passes over that memory (on 2 CPU cores ~20% of a GPT-2 small training
    step). Untied (e.g. a classifier's new head), the embedding's gradient must stay dense, because AdamW
    takes no sparse gradients. On a GPU those passes cost little.
    """
    return (model.out_head.weight is model.tok_emb.weight and idx.device.type == "cpu"
            and torch.is_grad_enabled() and model.tok_emb.weight.requires_grad)


class FastGPTModel(GPTModel):
    """``GPTModel`` with a forward pass that can continue from a KV cache, the sparse embedding gradient,
    and `start_decoding` for gpt_core.generate. Same parameters, same logits as the book's model."""

    def embed(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """The book's ``embed``, for tokens at positions start_pos, start_pos + 1, ... (after a KV cache's),
        with `sparse_embedding_grad`'s row gradient."""
        num_tokens = idx.shape[1]
        self.check_length(start_pos + num_tokens)
        tok_embeds = F.embedding(idx, self.tok_emb.weight, sparse=sparse_embedding_grad(self, idx))
        if self.pos_emb is None:  # no position embedding (an ablation)
            return self.drop_emb(tok_embeds)
        pos_embeds = self.pos_emb(torch.arange(start_pos, start_pos + num_tokens, device=idx.device))
        return self.drop_emb(tok_embeds + pos_embeds)  # (B, T, emb_dim)

    def hidden_states(self, idx: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        """Everything before the output head: idx (B, T) -> final-normed hidden states (B, T, emb_dim).

        kv_caches: one KVCache per layer; idx then holds only the tokens after those the caches hold.
        """
        start_pos = kv_caches[0].length if kv_caches else 0
        x = self.embed(idx, start_pos)
        for block, kv_cache in zip(self.trf_blocks, kv_caches or repeat(None)):
            x = block(x, kv_cache=kv_cache)
        return self.final_norm(x)

    def forward(self, idx: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, vocab_size), as the book's forward; `kv_caches` as in hidden_states."""
        return self.out_head(self.hidden_states(idx, kv_caches))

    def new_kv_caches(self, batch_size: int, max_len: int | None = None) -> list[KVCache]:
        """One empty, pre-allocated KVCache per layer, on the model's device and dtype."""
        cfg = self.cfg
        weight = self.tok_emb.weight
        max_len = min(max_len or cfg.context_length, cfg.context_length)
        return [KVCache.allocate(batch_size, cfg.n_heads, max_len, cfg.head_dim, weight.dtype, weight.device)
                for _ in range(cfg.n_layers)]

    def start_decoding(self, max_new_tokens: int, use_cache: bool = True) -> FastDecoder:
        """The function gpt_core.generate's loop calls for each new token's logits (see `FastDecoder`)."""
        return FastDecoder(self, max_new_tokens, use_cache)


# ---------------------------------------------------------------- generation
def head_for_decoding(model: GPTModel) -> torch.Tensor:
    """The output head's weight as (emb_dim, vocab), for one token's logits: hidden @ head_t.

    Replaces ``model.out_head(x)`` (F.linear with the (vocab, emb_dim) weight) while generating. The head
    (tied to the token embedding, stored (vocab, emb_dim)) is the largest matrix of GPT-2 small (50257 x 768,
    154 MB in float32). On CPU in float32 a transposed copy, read in memory order, gives one token's logits
    ~40% faster (and `one_token_linear` can share it out between threads). One copy per model is kept
    (while the model lives) and made again when the weight changes: another tensor, the same one updated in
    place (its version counter moves), or any optimizer step since (a fused AdamW step writes the weights
    without moving their version counter, so steps are counted apart: ``optimizer_steps``). Elsewhere (GPU;
    bfloat16, whose CPU kernels prefer the (vocab, emb_dim) order) it is a view, no copy.
    """
    weight = model.out_head.weight  # (vocab, emb_dim)
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return weight.t()
    key = (weight.data_ptr(), weight._version, optimizer_steps)
    cached = _decode_heads.get(model)  # (weak reference to the weight, key, head_t)
    if cached is None or cached[0]() is not weight or cached[1] != key:
        with torch.no_grad():
            cached = (weakref.ref(weight), key, weight.t().contiguous())  # (emb_dim, vocab)
        _decode_heads[model] = cached
    return cached[2]


_decode_heads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its head copy, while it lives
optimizer_steps = 0  # optimizer steps taken in this process, by any optimizer (a decoding head made before is stale)


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global optimizer_steps
    optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class FastDecoder:
    """window (B, T) -> logits of its last position (B, vocab_size), called once per new token.

    Replaces the book's step in gpt_core.generate, ``model(window)[:, -1, :]``, which runs the whole window
    through the model and the head for every position. Here:
    - with `use_cache`, each layer's keys and values stay in a KVCache, so only the tokens the decoder has
      not seen yet go through the model (the prompt once, then one token per step). The loop's window
      must be the previous one plus the new tokens; once it slides (longer than the context), the cache no
      longer fits it and every step runs the whole window, as the book's does. A model without the causal
      mask never uses the cache (each step runs the whole window).
    - the head runs on the last position only, with `head_for_decoding`'s copy, and for one token
      `one_token_linear` (GPT-2 small: greedy decoding 1.67x transformers' in float32).
    """

    def __init__(self, model: FastGPTModel, max_new_tokens: int, use_cache: bool = True):
        # no causal mask (an ablation): a new token changes every earlier token's keys and values, so no cache
        use_cache = use_cache and model.cfg.causal_mask
        self.model, self.max_new_tokens, self.use_cache = model, max_new_tokens, use_cache
        self.kv_caches: list[KVCache] | None = None  # allocated at the first call, for its batch size
        self.head_t, self.head_bias = head_for_decoding(model), model.out_head.bias  # (emb_dim, vocab), (vocab,)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.use_cache and self.kv_caches is None:  # the first call: the prompt
            self.kv_caches = model.new_kv_caches(window.shape[0], window.shape[1] + self.max_new_tokens)
        seen = self.kv_caches[0].length if self.kv_caches else 0
        if self.kv_caches and seen < window.shape[1]:
            hidden = model.hidden_states(window[:, seen:], self.kv_caches)  # only the new tokens
        else:
            hidden = model.hidden_states(window)  # no cache, or the window slid past the context
        return self.logits(hidden[:, -1])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, emb_dim) -> logits (B, vocab_size) through the decoding copy of the head."""
        if use_one_token_linear(hidden, self.head_t):
            return one_token_linear(hidden, self.head_t, self.head_bias)  # (1, vocab)
        logits = hidden @ self.head_t  # (B, vocab)
        return logits if self.head_bias is None else logits + self.head_bias
