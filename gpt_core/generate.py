"""Text generation: pick the next token, append it, repeat (chapter 5's decoding strategies).

The model gives logits for the next token. Temperature rescales them (0 = always the most likely
token, "greedy"), top-k keeps the k most likely tokens, top-p keeps the smallest set whose
probabilities add up to p. By default a KV cache keeps every layer's keys and values so each new
token costs one position of work instead of re-reading the whole text.

    >>> probs = next_token_probs(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), temperature=1.0, top_k=2)
    >>> probs.round(decimals=3)
    tensor([[0.7310, 0.2690, 0.0000, 0.0000]])
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gpt_core.attention import KVCache, one_token_linear, use_one_token_linear
from gpt_core.model import GPTModel

__all__ = ["KVCache", "GenerationStep", "filter_logits", "next_token_probs", "sample_next_token",
           "generate", "stream_generate"]


# ---------------------------------------------------------------- choosing one token
def _check_sampling_args(top_k: int | None, top_p: float | None):
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None to keep every token), got {top_k}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1]: a share of the probability mass to keep, got {top_p}.")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set the logits of tokens outside top-k / top-p to -inf. logits: (B, vocab)."""
    _check_sampling_args(top_k, top_p)
    if top_k is not None and top_k < logits.shape[-1]:  # top_k larger than the vocabulary keeps all
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, -torch.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_ids = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the better tokens
        drop_sorted = mass_before >= top_p  # the best token always stays (mass_before = 0)
        drop = drop_sorted.scatter(-1, sorted_ids, drop_sorted)
        logits = logits.masked_fill(drop, -torch.inf)
    return logits


def next_token_probs(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """Probabilities (B, vocab) the sampler draws from. temperature <= 0 shows the plain softmax (T = 1)."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    return torch.softmax(filter_logits(logits, top_k, top_p), dim=-1)


def sample_next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B, vocab) -> next token ids (B, 1). temperature <= 0: greedy (argmax)."""
    if temperature <= 0:
        _check_sampling_args(top_k, top_p)
        return logits.argmax(dim=-1, keepdim=True)  # top-k / top-p never remove the best token
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator)


# ---------------------------------------------------------------- the loop
@contextlib.contextmanager
def _eval_mode(model: GPTModel):
    """Dropout off while generating; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _head_for_decoding(model: GPTModel) -> torch.Tensor:
    """The output head's weight as (emb_dim, vocab), for one token's logits: hidden @ head_t.

    The head (tied to the token embedding, stored (vocab, emb_dim)) is the largest matrix of GPT-2 small
    (50257 x 768, 154 MB in float32). On CPU in float32 a transposed copy, read in memory order, gives one
    token's logits ~40% faster (and `one_token_linear` can share it out between threads). One copy per
    model is kept (while the model lives) and made again when the weight changes: another tensor, or the
    same one updated in place (its version counter moves with every in-place update: an optimizer step).
    Elsewhere (GPU; bfloat16, whose CPU kernels prefer the (vocab, emb_dim) order) it is a view, no copy.
    """
    weight = model.out_head.weight  # (vocab, emb_dim)
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return weight.t()
    key = (weight.data_ptr(), weight._version)
    cached = _decode_heads.get(model)  # (weak reference to the weight, key, head_t)
    if cached is None or cached[0]() is not weight or cached[1] != key:
        with torch.no_grad():
            cached = (weakref.ref(weight), key, weight.t().contiguous())  # (emb_dim, vocab)
        _decode_heads[model] = cached
    return cached[2]


_decode_heads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its head copy, while it lives


def _next_logits(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, use_cache: bool,
                 choose) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shared loop: yields (logits (B, vocab), next_ids (B, 1)) with next_ids = choose(logits).

    Cached: the prompt goes in once (prefill), then one token at a time; stops when the cache is full.
    Uncached: the whole window, cropped to the last context_length tokens, every step.
    """
    context_length = model.cfg.context_length
    window = idx[:, -context_length:]
    caches = model.new_kv_caches(idx.shape[0], window.shape[1] + max_new_tokens) if use_cache else None
    head_t, head_bias = _head_for_decoding(model), model.out_head.bias  # (emb_dim, vocab), (vocab,) or None

    def last_logits(ids):
        hidden = model.transformer(ids, kv_caches=caches)[:, -1]  # (B, emb_dim)
        if use_one_token_linear(hidden, head_t):
            return one_token_linear(hidden, head_t, head_bias)  # (1, vocab)
        logits = hidden @ head_t  # (B, vocab)
        return logits if head_bias is None else logits + head_bias

    logits = last_logits(window)
    for step in range(max_new_tokens):
        next_ids = choose(logits)  # (B, 1)
        yield logits, next_ids
        if step == max_new_tokens - 1:
            return
        if use_cache:
            if caches[0].length >= context_length:
                return  # every position is used
            logits = last_logits(next_ids)
        else:
            window = torch.cat([window, next_ids], dim=1)[:, -context_length:]
            logits = last_logits(window)


def _as_batch(idx) -> torch.Tensor:
    idx = torch.as_tensor(idx, dtype=torch.long)
    if idx.dim() == 1:
        idx = idx.unsqueeze(0)
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must be token ids shaped (tokens,) or (batch, tokens), at least one token; "
                         f"got shape {tuple(idx.shape)}.")
    return idx


def generate(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return idx (B, T) with up to max_new_tokens new ids appended (1-D in, 1-D out).

    Stops early once every sequence has produced eos_id (kept in the output; in a batch, sequences that
    finished earlier keep getting tokens until the last one finishes).
    """
    _check_sampling_args(top_k, top_p)
    batch = _as_batch(idx).to(model.tok_emb.weight.device)
    if max_new_tokens <= 0:
        return idx

    def choose(logits):
        return sample_next_token(logits, temperature, top_k, top_p, generator)

    new_ids = []
    finished = torch.zeros(batch.shape[0], 1, dtype=torch.bool, device=batch.device)
    with _eval_mode(model), torch.inference_mode():
        for _, next_ids in _next_logits(model, batch, max_new_tokens, use_cache, choose):
            new_ids.append(next_ids)
            if eos_id is not None:
                finished |= next_ids == eos_id
                if bool(finished.all()):
                    break
    out = torch.cat([batch, *new_ids], dim=1)
    return out[0] if torch.as_tensor(idx).dim() == 1 else out


@dataclass
class GenerationStep:
    token_id: int  # the token that was chosen
    prob: float  # its probability after temperature / top-k / top-p
    candidates: list[tuple[int, float]]  # the top_n most likely (token id, probability), best first


def stream_generate(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
                    top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                    eos_id: int | None = None, top_n: int = 10, use_cache: bool = True) -> Iterator[GenerationStep]:
    """Generate for one sequence, yielding each chosen token with the probabilities it was drawn from."""
    _check_sampling_args(top_k, top_p)
    batch = _as_batch(idx).to(model.tok_emb.weight.device)
    if batch.shape[0] != 1:
        raise ValueError(f"stream_generate follows one sequence; got a batch of {batch.shape[0]}.")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=batch.device).manual_seed(seed)
    step_probs = {}

    def choose(logits):
        probs = next_token_probs(logits, temperature, top_k, top_p)  # (1, vocab)
        step_probs["probs"] = probs
        if temperature <= 0:
            return probs.argmax(dim=-1, keepdim=True)
        return torch.multinomial(probs, num_samples=1, generator=generator)

    steps = _next_logits(model, batch, max_new_tokens, use_cache, choose)
    with _eval_mode(model):
        while True:
            # Inference mode belongs to a thread, and a web server may resume this generator on another
            # thread: so enter it for each step's work, never across a `yield`.
            with torch.inference_mode():
                next_ids = next(steps, (None, None))[1]
                if next_ids is None:
                    return
                probs = step_probs["probs"][0]
                token_id = int(next_ids[0, 0])
                top = torch.topk(probs, min(top_n, probs.shape[0]))
                candidates = [(int(i), float(p)) for p, i in zip(top.values, top.indices) if p > 0]
                step = GenerationStep(token_id=token_id, prob=float(probs[token_id]), candidates=candidates)
            yield step
            if eos_id is not None and token_id == eos_id:
                return
