"""What a training run tells the outside world: small typed events, yielded by the loops.

``gpt_core.train.train`` (pretraining) and ``gpt_core.finetune_loop`` (fine-tuning) are generators. Where
nanoGPT prints, they yield one of these; the app draws them, the command line prints them::

    >>> StepEvent(step=1, epoch=0.1, tokens_seen=512, train_loss=10.9, lr=3e-5, grad_norm=1.2,
    ...           tokens_per_s=900.0, elapsed_s=0.6, eta_s=59.4, mfu=None).to_dict()["kind"]
    'step'

A run yields one StartEvent, then StepEvents (and Eval, Sample, Snapshot, Accuracy, Checkpoint, Warning events as
they happen), and ends with one DoneEvent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar


def jsonable(value):
    """Tuples become lists, so that ``json.dumps`` and a browser read them back the same way."""
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class Event:
    """Base of everything a run yields; ``kind`` names the type, ``to_dict()`` is ready for JSON."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **{k: jsonable(v) for k, v in asdict(self).items()}}


@dataclass
class StartEvent(Event):
    kind: ClassVar[str] = "start"
    device: str
    autocast: str | None  # "bfloat16" or None
    n_params: int
    tokens_per_step: int
    max_steps: int
    start_step: int  # 0, or the step a resumed run continues from
    world_size: int = 1


@dataclass
class StepEvent(Event):
    kind: ClassVar[str] = "step"
    step: int  # optimizer steps done (1 after the first update)
    epoch: float  # passes over the training data so far (1.5 = halfway through the second pass)
    tokens_seen: int
    train_loss: float  # mean loss of this step's micro-batches (all processes under DDP)
    lr: float  # the learning rate this step used: lr_at(step, config)
    grad_norm: float  # global gradient norm before clipping
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None
    mfu: float | None  # model FLOPs utilisation (0..1); None where the device's peak is unknown (CPU, MPS)


@dataclass
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    step: int
    val_loss: float | None  # None when there is no validation data
    val_perplexity: float | None  # exp(val_loss): "as unsure as choosing among this many tokens"
    train_loss: float  # on the same fixed training batches each time, so the two curves compare fairly


@dataclass
class SampleEvent(Event):
    kind: ClassVar[str] = "sample"
    step: int
    prompt: str
    text: str  # prompt + greedy continuation


@dataclass
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass
class DoneEvent(Event):
    kind: ClassVar[str] = "done"
    reason: str  # "max_steps" | "max_tokens" | "time_budget" | "stopped" | "nan"
    message: str
    step: int
    checkpoint_path: str | None  # the final (or, after "nan", the last good) checkpoint


@dataclass
class SnapshotEvent(Event):
    """The model's insides at one step (``gpt_core.snapshots``): light lists, no weights.

    Text views need the run's tokenizer; without one, the probe, prediction and sample fields are empty and
    the map's tokens are named by their ids. A snapshot is never changed once made, so a deep copy (Gradio's
    copy of a run history) shares it instead of copying thousands of numbers.
    """

    kind: ClassVar[str] = "snapshot"
    step: int  # optimizer steps done: 0 is the untrained model
    probe_tokens: list[str]  # the probe sentence's tokens (T <= 24)
    attention: list  # (n_layers, n_heads, T, T): every head's weights on the probe
    previous_token: list[list[float]]  # (n_layers, n_heads): mean weight on the token just before
    induction: list[list[float]]  # (n_layers, n_heads): mean weight on the token after the earlier occurrence
    map_tokens: list[str]  # the N tokens of the embedding map
    map_xy: list[list[float]]  # (N, 2): their token embeddings on the first two principal components
    map_variance: list[float]  # the share of the variance each of the two components explains
    prompt: str
    next_tokens: list[str]  # the 10 likeliest next tokens after the prompt, likeliest first
    next_probs: list[float]
    lens_tokens: list  # (n_layers + 1, T, 5): each layer's 5 likeliest next tokens at each probe position
    lens_probs: list  # (n_layers + 1, T, 5)
    sample: str  # the prompt and its greedy continuation

    def __deepcopy__(self, memo) -> SnapshotEvent:
        return self


@dataclass
class AccuracyEvent(Event):
    """Share of correct classes (chapter 6). During training on the first ``eval_batches`` batches;
    ``final`` on every example."""

    kind: ClassVar[str] = "accuracy"
    step: int
    epoch: float
    train_accuracy: float
    val_accuracy: float | None
    test_accuracy: float | None = None
    final: bool = False


@dataclass
class ConfusionEvent(Event):
    """Counts ``matrix[true][predicted]`` on the test messages after training (chapter 6)."""

    kind: ClassVar[str] = "confusion"
    step: int
    matrix: list[list[int]]


@dataclass
class ExactMatchEvent(Event):
    """Exact-match score of the model's answers on held-out records, "before" or "after" tuning (chapter 7)."""

    kind: ClassVar[str] = "exact_match"
    when: str  # "before" | "after"
    correct: int
    total: int
    rows: list[dict]  # {"instruction", "input", "expected", "answer", "correct"} per record

    @property
    def score(self) -> float:
        return self.correct / self.total if self.total else float("nan")
