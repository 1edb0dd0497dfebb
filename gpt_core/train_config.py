"""The settings of a pretraining run (chapter 5) and what follows from them before the first step.

- ``TrainConfig``: every setting, checked as soon as it is made (a bad value raises ValueError);
- ``lr_at``: the learning rate of each step (linear warm-up, then cosine decay or constant), ``lr_schedule`` for a plot;
- ``flops_per_token`` and ``peak_flops``: the model FLOPs utilisation (MFU) a step reaches;
- ``training_autocast_dtype``: bf16 autocast where the device supports it.

    >>> config = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=110)
    >>> [round(lr_at(step, config), 6) for step in (1, 10, 60, 110)]   # warm-up, peak, halfway, floor
    [0.0001, 0.001, 0.00055, 0.0001]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from gpt_core.device import autocast_dtype
from gpt_core.events import jsonable
from gpt_core.model import GPTConfig, parameter_breakdown
from gpt_core.snapshots import MAX_PROBE_CHARS, MAX_SNAPSHOTS, PROBE_TEXT

AUTOCAST_CHOICES = ("auto", "bf16", "off")
SCHEDULE_CHOICES = ("cosine", "constant")  # after the warm-up: decay to min_lr, or stay at lr
OPTIMIZER_CHOICES = ("lab", "book")


@dataclass
class TrainConfig:
    """Every setting of a pretraining run. Invalid values raise ValueError as soon as the config is made."""

    lr: float = 3e-4  # peak learning rate, reached at the end of warmup
    min_lr: float | None = None  # floor of the cosine decay; None -> lr / 10 (as in nanoGPT)
    warmup_steps: int = 10  # linear warmup from lr / warmup_steps up to lr
    schedule: str = "cosine"  # after warmup: "cosine" decays to min_lr, "constant" stays at lr (see lr_at)
    max_steps: int = 200  # optimizer steps in the whole run (a resumed run counts the earlier ones)
    max_tokens: int | None = None  # stop once this many training tokens were seen (None: no limit)
    time_budget_s: float | None = None  # stop after this many seconds (None: no limit)
    batch_size: int = 8  # sequences per micro-batch (per process under DDP)
    grad_accum_steps: int = 1  # micro-batches summed into one optimizer step
    context_length: int | None = None  # tokens per sequence when the data is raw ids; None -> model's
    weight_decay: float = 0.1  # on weight matrices and embeddings (params with dim >= 2), not biases/norms
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    eval_every: int = 50  # evaluate every N steps (0: never); also at the end of the run
    eval_batches: int = 4  # the same first N batches of each split at every evaluation
    sample_every: int = 0  # generate a sample every N steps (0: never); needs a tokenizer or encode+decode
    sample_prompt: str = "Every effort moves you"
    sample_tokens: int = 30  # new tokens per sample (greedy, so the same weights give the same text)
    snapshot_steps: tuple[int, ...] = ()  # photograph the model's insides at these steps (gpt_core.snapshots)
    snapshot_text: str = PROBE_TEXT  # the probe sentence of the snapshots (at most 200 characters)
    checkpoint_every: int = 0  # write a checkpoint every N steps (0: only at the end); needs out_dir
    keep_checkpoints: int = 2  # keep the newest N checkpoint folders
    out_dir: str | None = None
    resume_from: str | None = None  # a checkpoint folder, or an out_dir (its latest checkpoint)
    seed: int | None = 123  # fixes the batch order and dropout; None: no reseeding, the book's DataLoader order
    optimizer: str = "lab"  # "lab": AdamW, decay on matrices only, fused; "book": AdamW(model.parameters()) as ch. 5
    eval_from_first_step: bool = False  # evaluate after steps 1, 1 + eval_every, ... (the book's) not eval_every, ...
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    autocast: str = "auto"  # "auto" (bf16 where supported), "bf16" or "off"; master weights stay fp32
    compile: bool = False  # torch.compile the model for training (CUDA recommended)
    log_every: int = 1  # yield a StepEvent every N steps (and on the first and last)
    tokenizer: Any = field(default=None, repr=False)  # anything with .encode(text) and .decode(ids)
    encode: Callable[[str], list[int]] | None = field(default=None, repr=False)
    decode: Callable[[Sequence[int]], str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.betas = tuple(self.betas)
        check(is_finite_number(self.lr) and self.lr > 0, f"The learning rate must be a number above 0, got {self.lr}.")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        check(is_finite_number(self.min_lr) and 0 <= self.min_lr <= self.lr,
               f"min_lr must be between 0 and lr ({self.lr}), got {self.min_lr}.")
        check_whole(self.batch_size, "The batch size", 1)
        check_whole(self.grad_accum_steps, "grad_accum_steps", 1)
        check_whole(self.max_steps, "max_steps (the number of optimizer steps)", 1)
        check_whole(self.warmup_steps, "warmup_steps", 0)
        check_whole(self.eval_batches, "eval_batches", 1)
        check_whole(self.log_every, "log_every", 1)
        check_whole(self.keep_checkpoints, "keep_checkpoints", 1)
        check_whole(self.sample_tokens, "sample_tokens", 1)
        check(isinstance(self.snapshot_steps, list | tuple), "snapshot_steps must be a list of steps, such as "
              "(0, 10, 100).")
        self.snapshot_steps = tuple(self.snapshot_steps)
        check(len(self.snapshot_steps) <= MAX_SNAPSHOTS, f"At most {MAX_SNAPSHOTS} snapshot_steps, got "
              f"{len(self.snapshot_steps)}.")
        for step in self.snapshot_steps:
            check_whole(step, "Each of snapshot_steps (0 is before training)", 0)
            check(step <= self.max_steps, f"snapshot_steps go up to max_steps ({self.max_steps}), got {step}.")
        check(isinstance(self.snapshot_text, str) and len(self.snapshot_text) <= MAX_PROBE_CHARS,
              f"snapshot_text must be a text of at most {MAX_PROBE_CHARS} characters.")
        for name in ("eval_every", "sample_every", "checkpoint_every"):
            check_whole(getattr(self, name), f"{name} (0 turns it off)", 0)
        if self.max_tokens is not None:
            check_whole(self.max_tokens, "max_tokens", 1)
        if self.context_length is not None:
            check_whole(self.context_length, "The context length", 1)
        if self.time_budget_s is not None:
            check(is_finite_number(self.time_budget_s) and self.time_budget_s > 0,
                   f"The time budget must be more than 0 seconds, got {self.time_budget_s}.")
        check(is_finite_number(self.weight_decay) and self.weight_decay >= 0,
               f"weight_decay must be 0 or more, got {self.weight_decay}.")
        check(len(self.betas) == 2 and all(is_finite_number(b) and 0 <= b < 1 for b in self.betas),
               f"betas must be two numbers in [0, 1), such as (0.9, 0.95); got {self.betas}.")
        if self.grad_clip is not None:
            check(is_finite_number(self.grad_clip) and self.grad_clip > 0,
                   f"grad_clip must be above 0 (or None for no clipping), got {self.grad_clip}.")
        if self.seed is not None:
            check_whole(self.seed, "The seed", 0)
        check(self.optimizer in OPTIMIZER_CHOICES,
              f"optimizer must be one of {', '.join(OPTIMIZER_CHOICES)}; got {self.optimizer!r}.")
        check(self.schedule in SCHEDULE_CHOICES,
              f"schedule must be one of {', '.join(SCHEDULE_CHOICES)}; got {self.schedule!r}.")
        check(self.autocast in AUTOCAST_CHOICES,
               f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}; got {self.autocast!r}.")

    def evaluates_after(self, step: int) -> bool:
        """True when step ``step`` (1-based) ends with an evaluation.

        >>> [s for s in range(1, 12) if TrainConfig(eval_every=5).evaluates_after(s)]
        [5, 10]
        >>> [s for s in range(1, 12) if TrainConfig(eval_every=5, eval_from_first_step=True).evaluates_after(s)]
        [1, 6, 11]
        """
        if not self.eval_every:
            return False
        return (step - 1 if self.eval_from_first_step else step) % self.eval_every == 0

    def to_dict(self) -> dict:
        """The settings as JSON-friendly values (the tokenizer and callables are left out)."""
        skip = {"tokenizer", "encode", "decode"}
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in skip}


def is_finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check_whole(value, what: str, minimum: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    check(ok, f"{what} must be a whole number of at least {minimum}, got {value!r}.")


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate schedule and FLOPs
# ---------------------------------------------------------------------------------------------------------------


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (1-based): linear warmup, then cosine decay to min_lr.

    - warmup, steps 1..W:      lr * step / W            (step W uses exactly lr)
    - decay, steps W+1..max:   min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2,
                               progress = (step - W) / (max_steps - W)   (the last step uses exactly min_lr)
    - schedule="constant":     lr after the warmup, to the end (min_lr is not used)

    With lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110: lr_at(10) = 1e-3, lr_at(60) = 5.5e-4 (halfway),
    lr_at(110) = 1e-4.

        >>> config = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=110, schedule="constant")
        >>> [lr_at(step, config) for step in (1, 10, 60, 110)]
        [0.0001, 0.001, 0.001, 0.001]
    """
    peak, floor, warmup = config.lr, config.min_lr, config.warmup_steps
    if warmup > 0 and step <= warmup:
        return peak * max(step, 1) / warmup
    if config.schedule == "constant":
        return peak
    decay_steps = config.max_steps - warmup
    progress = min(1.0, (step - warmup) / decay_steps) if decay_steps > 0 else 1.0
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_schedule(config: TrainConfig) -> list[float]:
    """``[lr_at(1), ..., lr_at(max_steps)]``, for plotting the schedule before a run starts."""
    return [lr_at(step, config) for step in range(1, config.max_steps + 1)]


# Dense bf16 tensor-core peaks in FLOP/s, matched against torch.cuda.get_device_name (first match wins).
PEAK_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "V100": 125e12,  # fp16 (V100 has no bf16)
    "T4": 65e12,  # fp16
}


def flops_per_token(cfg: GPTConfig, context_length: int | None = None) -> float:
    """Training FLOPs per token: 6N + 12 * n_layers * emb_dim * T (Kaplan et al. 2020; nanoGPT's estimate_mfu).

    N counts the parameters without the position embedding (a table lookup costs no multiply-adds). Each
    parameter costs 2 FLOPs forward and 4 backward (6N); attention scores and their weighted sum add
    12 * n_layers * emb_dim * T, with T the sequence length.

    >>> round(flops_per_token(GPTConfig.preset("gpt2-small")) / 1e6)  # 6 * 123.7M + 12 * 12 * 768 * 1024
    855
    """
    n_params = sum(count for name, count in parameter_breakdown(cfg) if name != "position embedding")
    seq_len = context_length or cfg.context_length
    return 6 * n_params + 12 * cfg.n_layers * cfg.emb_dim * seq_len


def peak_flops(device: torch.device) -> float | None:
    """The device's peak FLOP/s from ``PEAK_FLOPS``, or None (CPU, MPS, unknown GPUs: then no MFU is shown)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


# ---------------------------------------------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------------------------------------------


def training_autocast_dtype(device: torch.device, setting: str) -> torch.dtype | None:
    """bf16 autocast where ``gpt_core.device`` says it works (CUDA, CPUs with AVX512), else None (fp32).

    float16 is not used for training here: it would need a gradient scaler to avoid underflow.
    """
    if setting == "off":
        return None
    supported = autocast_dtype(device)
    supported = supported if supported == torch.bfloat16 else None
    if setting == "bf16" and supported is None:
        raise ValueError(f"bf16 autocast is not supported on {device}; use autocast='off' or 'auto'.")
    return supported
