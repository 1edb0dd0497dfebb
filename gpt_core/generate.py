"""Text generation: pick the next token, append it, repeat (chapter 4's loop, chapter 5's decoding strategies).

The model gives logits for the next token. Temperature rescales them (0 = always the most likely
token, "greedy"), top-k keeps the k most likely tokens, top-p keeps the smallest set whose
probabilities add up to p. The book's loop runs the whole text (cropped to the model's context) through
the model for every new token; a model sped up by gpt_core.fast brings its own way to get those logits
(a KV cache keeps every layer's keys and values, so each new token costs one position of work).

    >>> probs = next_token_probs(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), temperature=1.0, top_k=2)
    >>> probs.round(decimals=3)
    tensor([[0.7310, 0.2690, 0.0000, 0.0000]])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from gpt_core.model import GPTModel, eval_mode

__all__ = ["GenerationStep", "filter_logits", "next_token_probs", "sample_next_token", "generation_loop",
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
def start_decoding(model: GPTModel, max_new_tokens: int, use_cache: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function: the cropped text so far (B, T) -> the logits after its last token (B, vocab_size).

    The book's runs the model on the whole window each step and keeps the last position. A model sped up
    by gpt_core.fast has ``start_decoding`` and brings its own, tested equal (with use_cache: a KV cache).
    """
    if hasattr(model, "start_decoding"):
        return model.start_decoding(max_new_tokens, use_cache)
    return lambda window: model(window)[:, -1, :]  # (B, T, vocab_size) -> the last position (B, vocab_size)


def generation_loop(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
                    top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
                    use_cache: bool = True, generator: torch.Generator | None = None,
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The generation loop. idx (B, T); yields (logits (B, vocab_size), next ids (B, 1)) for each new token.

    Stops after max_new_tokens, or once every sequence has produced eos_id (that token is yielded too).
    """
    context_length = model.cfg.context_length
    next_token_logits = start_decoding(model, max_new_tokens, use_cache)
    finished = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_length:]  # 1. crop to the last context_length tokens (B, <= context)
        logits = next_token_logits(idx_cond)  # 2. the logits after the last token (B, vocab_size)
        idx_next = sample_next_token(logits, temperature, top_k, top_p, generator)  # 3. pick one (B, 1)
        yield logits, idx_next
        idx = torch.cat((idx, idx_next), dim=1)  # 4. append it: (B, T + 1)
        if eos_id is not None:  # 5. stop once every sequence has said "end of text"
            finished |= idx_next == eos_id
            if bool(finished.all()):
                return


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
    finished earlier keep getting tokens until the last one finishes). use_cache lets a model sped up by
    gpt_core.fast keep a KV cache (same ids); the book's model always runs the whole window.

        >>> from gpt_core.model import GPTConfig
        >>> _ = torch.manual_seed(0)
        >>> model = GPTModel(GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1))
        >>> generate(model, torch.tensor([1, 2, 3]), max_new_tokens=4).shape   # 3 + 4 tokens
        torch.Size([7])
    """
    _check_sampling_args(top_k, top_p)
    batch = _as_batch(idx).to(model.tok_emb.weight.device)
    if max_new_tokens <= 0:
        return idx
    with eval_mode(model), torch.inference_mode():
        steps = generation_loop(model, batch, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                eos_id=eos_id, use_cache=use_cache, generator=generator)
        new_ids = [idx_next for _, idx_next in steps]  # (B, 1) each
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
    steps = generation_loop(model, batch, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            eos_id=eos_id, use_cache=use_cache, generator=generator)
    with eval_mode(model):
        while True:
            # Inference mode belongs to a thread, and a web server may resume this generator on another
            # thread: so enter it for each step's work, never across a `yield`.
            with torch.inference_mode():
                logits, next_ids = next(steps, (None, None))
                if next_ids is None:
                    return
                probs = next_token_probs(logits, temperature, top_k, top_p)[0]  # (vocab,) what it drew from
                token_id = int(next_ids[0, 0])
                top = torch.topk(probs, min(top_n, probs.shape[0]))
                candidates = [(int(i), float(p)) for p, i in zip(top.values, top.indices) if p > 0]
                step = GenerationStep(token_id=token_id, prob=float(probs[token_id]), candidates=candidates)
            yield step
