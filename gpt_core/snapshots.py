"""The model's insides across training: light snapshots at log-spaced steps.

A run with ``TrainConfig(snapshot_steps=snapshot_steps(max_steps))`` stops for a moment at those steps and
photographs the model (``SnapshotEvent``): no weights, only what the app's views draw, a few tens of KB.
On a fixed probe, a line of the Pretrain tab's default text (Shakespeare) said twice, so that copying heads
have something to copy (21 tokens with the tab's BPE, 23 with GPT-2's)::

    ROMEO:
    I will go to the king.
    ROMEO:
    I will go to the king.

1. every head's attention weights, and two scores per head:
   - previous-token score: the mean weight a token puts on the token just before it;
   - induction score: in the second repeat, the mean weight a token puts on the token that came right after
     its earlier occurrence (the second "ROMEO" looks at the ":" after the first), the head that lets a model
     copy;
2. the logit lens: each layer's likeliest next tokens at each probe position (``gpt_core.lens.logit_lens``);
3. the token embeddings of the N most frequent tokens, flattened to 2-D by PCA;
4. the 10 likeliest next tokens after the sample prompt, and the prompt's greedy continuation.

    >>> snapshot_steps(1000)
    [0, 10, 30, 100, 300, 1000]

``gpt_core.train`` takes a snapshot with ``Run.snapshot()``; everything it computes lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gpt_core.events import SnapshotEvent
from gpt_core.lens import logit_lens
from gpt_core.model import GPTModel, eval_mode

# Shakespeare's layout (the Pretrain tab's default text), said twice: the second line can copy the first.
PROBE_TEXT = "ROMEO:\nI will go to the king.\nROMEO:\nI will go to the king."
MAX_PROBE_CHARS = 200  # TrainConfig refuses a longer probe sentence
MAX_SNAPSHOTS = 50  # TrainConfig refuses more snapshot steps (each costs a pause of ~0.1 s for nano)
MAX_PROBE_TOKENS = 24  # the probe is cut to its first 24 tokens: 24 x 24 attention tiles stay readable
MAP_TOKENS = 1000  # the embedding map shows the 1,000 most frequent tokens of the training text
TOP_NEXT = 10  # next-token predictions kept
LENS_TOP_K = 5  # guesses kept per layer and position in the logit lens
DIGITS = 4  # numbers are rounded to 4 decimals: enough to draw, and a snapshot stays small


# ---------------------------------------------------------------- when
def snapshot_steps(max_steps: int) -> list[int]:
    """Log-spaced steps for a run of ``max_steps``: 0 (before training), 10, 30, 100, 300, ... and the last.

    Early steps change the model most, so the photos are dense at the start and sparse at the end.

    >>> snapshot_steps(1000)
    [0, 10, 30, 100, 300, 1000]
    >>> snapshot_steps(2000), snapshot_steps(12), snapshot_steps(5)
    ([0, 10, 30, 100, 300, 1000, 2000], [0, 10, 12], [0, 5])
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a whole number of at least 1, got {max_steps!r}.")
    steps, power = [0], 10
    while power < max_steps:
        steps += [step for step in (power, 3 * power) if step < max_steps]
        power *= 10
    return steps + [max_steps]


# ---------------------------------------------------------------- what a head does
def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """Mean weight each position puts on the position just before it: 1.0 for a perfect previous-token head.

    weights: (..., T, T) attention weights (rows are queries); returns (...). The first token has no
    previous token, so it is left out.

    >>> one_step_back = torch.diag(torch.ones(3), diagonal=-1)  # (4, 4): row t has all its weight on t-1
    >>> previous_token_score(one_step_back)
    tensor(1.)
    """
    n_tokens = weights.shape[-1]
    if n_tokens < 2:
        return weights.new_zeros(weights.shape[:-2])
    rows = torch.arange(1, n_tokens)
    return weights[..., rows, rows - 1].mean(dim=-1)  # weight of (t, t-1), averaged over t


def induction_targets(ids: Sequence[int]) -> list[list[int]]:
    """For each position t, the positions right after earlier occurrences of the token at t.

    An induction head at t looks there: "last time I saw this token, what came next?" Occurrences just
    before t are left out (the token after them is t itself, or t's previous token).

    >>> induction_targets([7, 8, 9, 7, 8, 9])
    [[], [], [], [1], [2], [3]]
    """
    return [[j + 1 for j in range(t - 1) if ids[j] == ids[t]] for t in range(len(ids))]


def induction_score(weights: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Mean weight on the induction targets, over the positions that have any: 1.0 for a perfect induction head.

    weights: (..., T, T); ids: the T token ids. 0 when no token repeats.

    >>> ids = [7, 8, 9, 7, 8, 9]
    >>> perfect = torch.zeros(6, 6)
    >>> perfect[range(6), [0, 0, 1, 1, 2, 3]] = 1.0  # rows 3, 4, 5 look at 1, 2, 3
    >>> induction_score(perfect, ids)
    tensor(1.)
    """
    rows = [(t, targets) for t, targets in enumerate(induction_targets(ids)) if targets]
    if not rows:
        return weights.new_zeros(weights.shape[:-2])
    on_targets = [weights[..., t, targets].sum(dim=-1) for t, targets in rows]  # each (...)
    return torch.stack(on_targets, dim=-1).mean(dim=-1)


# ---------------------------------------------------------------- the embedding map
def embedding_map(embeddings: torch.Tensor, previous: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Token embeddings (N, emb_dim) -> their coordinates on the first two principal components (N, 2),
    and the share of the variance each component explains.

    A component's sign is arbitrary (v and -v are both valid), so it is chosen to agree with ``previous`` (the
    last snapshot's map): points then move smoothly instead of flipping mirror-wise. Without ``previous``,
    the point farthest out along a component gets a positive coordinate.

    >>> points = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> coords, variance = embedding_map(points)
    >>> [round(share, 2) for share in variance]
    [0.8, 0.2]
    """
    centred = embeddings.float() - embeddings.float().mean(dim=0)  # (N, emb_dim)
    _, singular_values, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (emb_dim, emb_dim), rows = directions
    coords = centred @ vh[:2].T  # (N, 2)
    if previous is None:
        farthest = coords.abs().argmax(dim=0)  # (2,)
        signs = torch.sign(coords[farthest, torch.arange(2)])
    else:
        signs = torch.sign((coords * previous).sum(dim=0))  # +1 where this component agrees with the last map
    coords = coords * torch.where(signs == 0, 1.0, signs)
    variance = singular_values**2
    return coords, (variance[:2] / variance.sum().clamp_min(1e-12)).tolist()


def map_token_ids(train_data, vocab_size: int, probe_ids: Sequence[int], n: int = MAP_TOKENS) -> list[int]:
    """The token ids of the embedding map: the ``n`` most frequent in the training ids, then the probe's.

    Frequent tokens have trained embeddings; rare ones barely move. ``train_data`` that is not a list or
    tensor of ids (a dataset of pairs) gives the first ``n`` ids.

    >>> map_token_ids([5, 5, 5, 2, 2, 9], vocab_size=10, probe_ids=[7], n=2)
    [5, 2, 7]
    """
    ids = None
    if isinstance(train_data, torch.Tensor) and train_data.dim() == 1:
        ids = train_data
    elif isinstance(train_data, list | tuple) and train_data and isinstance(train_data[0], int):
        ids = torch.tensor(train_data)
    if ids is None:
        chosen = list(range(min(n, vocab_size)))
    else:
        counts = torch.bincount(ids.long().clamp(0, vocab_size - 1), minlength=vocab_size)  # (vocab,)
        order = torch.argsort(counts, descending=True, stable=True)[:n]
        chosen = [i for i in order.tolist() if counts[i] > 0]
    return chosen + [i for i in dict.fromkeys(probe_ids) if i not in set(chosen)]


# ---------------------------------------------------------------- one run's probe
@dataclass
class Probe:
    """What every snapshot of one run looks at, worked out once before the first."""

    ids: list[int]  # the probe sentence's token ids (empty without a tokenizer)
    tokens: list[str]
    prompt: str
    prompt_ids: list[int]
    map_ids: list[int]  # the tokens of the embedding map
    map_tokens: list[str]
    decode: Callable[[Sequence[int]], str] | None = None
    previous_xy: torch.Tensor | None = None  # the last snapshot's map (N, 2), for the signs

    def name(self, token_id: int) -> str:
        """A token's text, or ``#id`` when the run has no tokenizer."""
        return self.decode([token_id]) if self.decode else f"#{token_id}"


def make_probe(config, model: GPTModel, train_data) -> Probe:
    """The probe of a run: its tokenizer (``config.tokenizer`` or ``config.encode``/``decode``) splits the
    probe sentence and the prompt; without one there are no text views, only the embedding map."""
    encode = config.encode or getattr(config.tokenizer, "encode", None)
    decode = config.decode or getattr(config.tokenizer, "decode", None)
    has_text = encode is not None and decode is not None
    max_tokens = min(MAX_PROBE_TOKENS, model.cfg.context_length)
    ids = list(encode(config.snapshot_text))[:max_tokens] if has_text else []
    prompt_ids = list(encode(config.sample_prompt))[-model.cfg.context_length:] if has_text else []
    probe = Probe(ids=ids, tokens=[], prompt=config.sample_prompt if has_text else "", prompt_ids=prompt_ids,
                  map_ids=map_token_ids(train_data, model.cfg.vocab_size, ids), map_tokens=[],
                  decode=decode if has_text else None)
    probe.tokens = [probe.name(i) for i in ids]
    probe.map_tokens = [probe.name(i) for i in probe.map_ids]
    return probe


def rounded(tensor: torch.Tensor) -> list:
    """A tensor as nested lists of floats with ``DIGITS`` decimals."""
    return torch.round(tensor.double(), decimals=DIGITS).tolist()


@torch.no_grad()
def take_snapshot(model: GPTModel, probe: Probe, step: int, sample: str = "") -> SnapshotEvent:
    """Photograph ``model`` (dropout off, its mode restored afterwards); ``sample``: the prompt's continuation."""
    device = model.tok_emb.weight.device
    fields = {"attention": [], "previous_token": [], "induction": [], "lens_tokens": [], "lens_probs": [],
              "next_tokens": [], "next_probs": []}
    with eval_mode(model):
        if probe.ids:
            fields.update(probe_views(model, probe, device))
        if probe.prompt_ids:
            fields.update(next_token_views(model, probe, device))
        embeddings = model.tok_emb.weight[torch.tensor(probe.map_ids, device=device)].cpu()  # (N, emb_dim)
    coords, variance = embedding_map(embeddings, probe.previous_xy)
    probe.previous_xy = coords
    return SnapshotEvent(step=step, probe_tokens=probe.tokens, map_tokens=probe.map_tokens, map_xy=rounded(coords),
                         map_variance=[round(share, DIGITS) for share in variance], prompt=probe.prompt,
                         sample=sample, **fields)


def probe_views(model: GPTModel, probe: Probe, device: torch.device) -> dict:
    """Attention weights, head scores and the logit lens on the probe sentence."""
    idx = torch.tensor([probe.ids], device=device)  # (1, T)
    capture = model.forward_with_capture(idx)
    attention = torch.stack([weights[0] for weights in capture.attn_weights]).float().cpu()  # (L, H, T, T)
    lens = logit_lens(model, idx, top_k=min(LENS_TOP_K, model.cfg.vocab_size))  # top_ids, top_probs: (L + 1, T, k)
    lens_tokens = [[[probe.name(i) for i in guesses] for guesses in layer] for layer in lens.top_ids.tolist()]
    return {"attention": rounded(attention), "previous_token": rounded(previous_token_score(attention)),
            "induction": rounded(induction_score(attention, probe.ids)), "lens_tokens": lens_tokens,
            "lens_probs": rounded(lens.top_probs)}


def next_token_views(model: GPTModel, probe: Probe, device: torch.device) -> dict:
    """The ``TOP_NEXT`` likeliest next tokens after the prompt, and their probabilities."""
    logits = model(torch.tensor([probe.prompt_ids], device=device))[0, -1]  # (vocab,)
    top = torch.topk(torch.softmax(logits.float(), dim=-1), min(TOP_NEXT, logits.shape[-1]))
    return {"next_tokens": [probe.name(i) for i in top.indices.tolist()], "next_probs": rounded(top.values)}
