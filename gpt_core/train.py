"""Pretraining as a stream of events (chapter 5): the loop, the learning-rate schedule, checkpoints and resuming.

``train(...)`` is a generator. Each step it yields small events that the app draws and the CLI prints::

    cfg = TrainConfig(lr=3e-4, warmup_steps=10, max_steps=200, batch_size=8, eval_every=20, out_dir="runs/nano")
    for event in train(model, train_ids, val_ids, cfg):
        print(event.to_dict())   # {'kind': 'step', 'step': 1, 'train_loss': 10.9, 'lr': 3e-05, ...}

One optimizer step:

    for each of grad_accum_steps micro-batches:   (B, T) inputs -> logits (B, T, V) -> cross-entropy -> backward
    clip the gradient norm to grad_clip -> set lr = lr_at(step) -> AdamW step

Reproducibility: ``config.seed`` fixes the order of the batches (epoch e shuffles with ``seed + e``) and the
dropout masks (``torch.manual_seed(seed)`` when the run starts). The model is passed in already built, so its
initial weights come from whatever seed was set before building it. Dropout uses torch's global random
generator, so two runs in parallel threads of one process draw from the same stream and are not reproducible.

A checkpoint folder ``out_dir/step-000200/`` holds:

    model.safetensors, config.json    the weights and model shape (``gpt_core.checkpoints.load_checkpoint``)
    train_state.safetensors           AdamW's moments and the torch random-number states
    train_state.json                  step, tokens seen, data position, optimizer settings, python RNG, config

and ``out_dir/latest.txt`` names the newest complete one. Every folder is written under a temporary name and
renamed into place, then ``latest.txt`` is replaced atomically, so a run killed mid-write leaves the previous
checkpoint loadable. Nothing is pickled.

Run it from a shell (``python -m gpt_core.train --help``), also with several processes:
``torchrun --nproc_per_node=2 -m gpt_core.train ...`` trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from gpt_core.checkpoints import save_checkpoint
from gpt_core.data import SlidingWindowDataset
from gpt_core.device import autocast_dtype, keep_freed_memory, pick_device
from gpt_core.model import GPTConfig, GPTModel, parameter_breakdown

# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------

AUTOCAST_CHOICES = ("auto", "bf16", "off")
CHECKPOINT_PREFIX = "step-"
LATEST_FILE = "latest.txt"
STATE_FORMAT = "llm-lab-train-state"
STATE_VERSION = 1


@dataclass
class TrainConfig:
    """Every setting of a pretraining run. Invalid values raise ValueError as soon as the config is made."""

    lr: float = 3e-4  # peak learning rate, reached at the end of warmup
    min_lr: float | None = None  # floor of the cosine decay; None -> lr / 10 (as in nanoGPT)
    warmup_steps: int = 10  # linear warmup from lr / warmup_steps up to lr
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
    checkpoint_every: int = 0  # write a checkpoint every N steps (0: only at the end); needs out_dir
    keep_checkpoints: int = 2  # keep the newest N checkpoint folders
    out_dir: str | None = None
    resume_from: str | None = None  # a checkpoint folder, or an out_dir (its latest checkpoint)
    seed: int = 123
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    autocast: str = "auto"  # "auto" (bf16 where supported), "bf16" or "off"; master weights stay fp32
    compile: bool = False  # torch.compile the model for training (CUDA recommended)
    log_every: int = 1  # yield a StepEvent every N steps (and on the first and last)
    tokenizer: Any = field(default=None, repr=False)  # anything with .encode(text) and .decode(ids)
    encode: Callable[[str], list[int]] | None = field(default=None, repr=False)
    decode: Callable[[Sequence[int]], str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.betas = tuple(self.betas)
        _check(_is_number(self.lr) and self.lr > 0, f"The learning rate must be a number above 0, got {self.lr}.")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        _check(_is_number(self.min_lr) and 0 <= self.min_lr <= self.lr,
               f"min_lr must be between 0 and lr ({self.lr}), got {self.min_lr}.")
        _check_int(self.batch_size, "The batch size", 1)
        _check_int(self.grad_accum_steps, "grad_accum_steps", 1)
        _check_int(self.max_steps, "max_steps (the number of optimizer steps)", 1)
        _check_int(self.warmup_steps, "warmup_steps", 0)
        _check_int(self.eval_batches, "eval_batches", 1)
        _check_int(self.log_every, "log_every", 1)
        _check_int(self.keep_checkpoints, "keep_checkpoints", 1)
        _check_int(self.sample_tokens, "sample_tokens", 1)
        for name in ("eval_every", "sample_every", "checkpoint_every"):
            _check_int(getattr(self, name), f"{name} (0 turns it off)", 0)
        if self.max_tokens is not None:
            _check_int(self.max_tokens, "max_tokens", 1)
        if self.context_length is not None:
            _check_int(self.context_length, "The context length", 1)
        if self.time_budget_s is not None:
            _check(_is_number(self.time_budget_s) and self.time_budget_s > 0,
                   f"The time budget must be more than 0 seconds, got {self.time_budget_s}.")
        _check(_is_number(self.weight_decay) and self.weight_decay >= 0,
               f"weight_decay must be 0 or more, got {self.weight_decay}.")
        _check(len(self.betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in self.betas),
               f"betas must be two numbers in [0, 1), such as (0.9, 0.95); got {self.betas}.")
        if self.grad_clip is not None:
            _check(_is_number(self.grad_clip) and self.grad_clip > 0,
                   f"grad_clip must be above 0 (or None for no clipping), got {self.grad_clip}.")
        _check(self.autocast in AUTOCAST_CHOICES,
               f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}; got {self.autocast!r}.")

    def to_dict(self) -> dict:
        """The settings as JSON-friendly values (the tokenizer and callables are left out)."""
        skip = {"tokenizer", "encode", "decode"}
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in skip}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_int(value, what: str, minimum: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _check(ok, f"{what} must be a whole number of at least {minimum}, got {value!r}.")


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value


# ---------------------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Event:
    """Base of everything ``train`` yields; ``kind`` names the type, ``to_dict()`` is ready for JSON."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **{k: _jsonable(v) for k, v in asdict(self).items()}}


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


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate schedule and FLOPs
# ---------------------------------------------------------------------------------------------------------------


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (1-based): linear warmup, then cosine decay to min_lr.

    - warmup, steps 1..W:      lr * step / W            (step W uses exactly lr)
    - decay, steps W+1..max:   min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2,
                               progress = (step - W) / (max_steps - W)   (the last step uses exactly min_lr)

    With lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110: lr_at(10) = 1e-3, lr_at(60) = 5.5e-4 (halfway),
    lr_at(110) = 1e-4.
    """
    peak, floor, warmup = config.lr, config.min_lr, config.warmup_steps
    if warmup > 0 and step <= warmup:
        return peak * max(step, 1) / warmup
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


def _autocast_dtype(device: torch.device, setting: str) -> torch.dtype | None:
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


# ---------------------------------------------------------------------------------------------------------------
# Data: a seeded, resumable order of batches
# ---------------------------------------------------------------------------------------------------------------


def as_dataset(data, context_length: int, split: str):
    """Token ids (list or 1-D tensor) -> non-overlapping windows; a dataset of (input, target) pairs is kept."""
    if data is None:
        return None
    is_ids = getattr(data, "ndim", None) == 1 or (  # a 1-D tensor or numpy array, or a list of ints
        isinstance(data, Sequence) and len(data) > 0 and isinstance(data[0], numbers.Integral)
    )
    if not is_ids:
        _check(hasattr(data, "__getitem__") and hasattr(data, "__len__"),
               f"The {split} data must be token ids or a dataset of (input, target) pairs.")
        return data
    try:
        return SlidingWindowDataset(data, context_length=context_length, stride=context_length)
    except ValueError as err:
        raise ValueError(f"The {split} text is too short: {err}") from None


def _collate(dataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[int(i)] for i in indices]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in pairs])  # (B, T)
    targets = torch.stack([torch.as_tensor(y) for _, y in pairs])  # (B, T)
    return inputs, targets


class BatchStream:
    """Batches in a seeded order that can be resumed from ``(epoch, batch_index)``.

    Epoch e visits the windows in the order ``randperm(n, seed + e)``. Under DDP each global batch holds
    ``batch_size * world_size`` windows and process ``rank`` takes its slice, so processes never share a window.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, batch_index: int = 0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batch_index = epoch, batch_index
        self.batches_per_epoch = len(dataset) // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"The training data has {len(dataset)} sequences, fewer than one batch of "
                f"{batch_size * world_size}. Use a smaller batch size or context length, or a longer text."
            )
        self._order_epoch, self._order = None, None

    def _epoch_order(self) -> torch.Tensor:
        if self._order_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            self._order = torch.randperm(len(self.dataset), generator=generator)
            self._order_epoch = self.epoch
        return self._order

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch_index >= self.batches_per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
        start = (self.batch_index * self.world_size + self.rank) * self.batch_size
        indices = self._epoch_order()[start : start + self.batch_size]
        self.batch_index += 1
        return _collate(self.dataset, indices.tolist())

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.batch_index / self.batches_per_epoch

    def position(self) -> dict:
        return {"epoch": self.epoch, "batch_index": self.batch_index}


def fixed_batches(dataset, batch_size: int, n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n_batches`` batches in order (the last may be smaller): the same ones at every evaluation."""
    if dataset is None:
        return []
    n_items = min(len(dataset), batch_size * n_batches)
    return [_collate(dataset, range(start, min(start + batch_size, n_items)))
            for start in range(0, n_items, batch_size)]


# ---------------------------------------------------------------------------------------------------------------
# Loss, evaluation, sampling
# ---------------------------------------------------------------------------------------------------------------


def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, amp_dtype=None) -> torch.Tensor:
    """Mean cross-entropy of next-token predictions; logits (B, T, V) are compared in fp32."""
    with torch.autocast(device_type=inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device, amp_dtype=None) -> float | None:
    """Mean loss over fixed batches, with dropout off; None when there are no batches."""
    if not batches:
        return None
    was_training = model.training
    model.eval()
    losses = [batch_loss(model, x.to(device), y.to(device), amp_dtype).item() for x, y in batches]
    model.train(was_training)
    return sum(losses) / len(losses)


def _text_codec(config: TrainConfig):
    encode = config.encode or getattr(config.tokenizer, "encode", None)
    decode = config.decode or getattr(config.tokenizer, "decode", None)
    return encode, decode


def sample_text(model: GPTModel, config: TrainConfig, device: torch.device) -> str:
    """Greedy continuation of ``config.sample_prompt`` (deterministic: no random numbers are drawn)."""
    from gpt_core.generate import generate

    encode, decode = _text_codec(config)
    prompt_ids = list(encode(config.sample_prompt)) or [getattr(config.tokenizer, "eot_id", 0)]
    prompt_ids = prompt_ids[-(model.cfg.context_length - 1):]
    idx = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    out = generate(model, idx, config.sample_tokens, temperature=0.0)
    return decode(out.tolist())


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: weights + optimizer + RNG + data position, written atomically
# ---------------------------------------------------------------------------------------------------------------


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten AdamW's state: tensors as ``optimizer.state.<param>.<name>`` for safetensors, the rest as JSON."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{name}"] = value
    groups = [{k: _jsonable(v) for k, v in group.items()} for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer.state."):
            param_id, name = key.removeprefix("optimizer.state.").split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    for key, value in info["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group
              for group in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor], python_state) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder in ``out_dir`` (from latest.txt), or None."""
    pointer = Path(out_dir) / LATEST_FILE
    if not pointer.exists():
        return None
    folder = Path(out_dir) / pointer.read_text().strip()
    return folder if folder.is_dir() else None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_training_checkpoint(out_dir: str | Path, model: GPTModel, optimizer: torch.optim.Optimizer, *,
                             step: int, tokens_seen: int, data_position: dict, config: TrainConfig,
                             tokenizer_path: str | None = None) -> Path:
    """Write ``out_dir/step-NNNNNN/`` atomically, point latest.txt at it, and drop folders beyond keep_checkpoints."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".tmp-{CHECKPOINT_PREFIX}*"):  # left behind by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    name = f"{CHECKPOINT_PREFIX}{step:06d}"
    tmp_dir, final_dir = out_dir / f".tmp-{name}", out_dir / name
    try:
        save_checkpoint(model, tmp_dir, tokenizer_path=tokenizer_path, extra={"step": step, "tokens_seen": tokens_seen})
        optimizer_tensors, optimizer_info = _optimizer_to_files(optimizer)
        save_file({**optimizer_tensors, **_rng_tensors()}, str(tmp_dir / "train_state.safetensors"))
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "tokens_seen": tokens_seen,
            "data_position": data_position, "optimizer": optimizer_info,
            "python_random_state": list(random.getstate()), "config": config.to_dict(),
        }
        (tmp_dir / "train_state.json").write_text(json.dumps(state, indent=1))
        if final_dir.exists():  # the same step written again (e.g. a stop right after a periodic save)
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    _write_text_atomic(out_dir / LATEST_FILE, name + "\n")
    folders = sorted(p for p in out_dir.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(r"step-\d+", p.name))
    for old in folders[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final_dir


def _checkpoint_folder(path: str | Path) -> Path:
    path = Path(path)
    if (path / "train_state.json").exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise ValueError(f"No training checkpoint in {path}: expected train_state.json or {LATEST_FILE}.")
    return latest


def load_training_state(path: str | Path, model: GPTModel) -> tuple[dict, dict[str, torch.Tensor]]:
    """Load a checkpoint's weights into ``model``; return (train_state.json, train_state tensors)."""
    folder = _checkpoint_folder(path)
    state = json.loads((folder / "train_state.json").read_text())
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{folder} is not an LLM Lab training checkpoint.")
    try:
        load_model(model, str(folder / "model.safetensors"), strict=True)
    except RuntimeError as err:
        raise ValueError(f"The checkpoint in {folder} was made for a model of another shape: {err}") from None
    return state, load_file(str(folder / "train_state.safetensors"))


# ---------------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------------


def _distributed() -> tuple[int, int]:
    """(rank, world_size): (0, 1) unless torch.distributed was initialised (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def prepare_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """Move the model to the device and set up the fast paths that training on it needs (in place).

    - CPU: glibc keeps freed memory for the next step (``keep_freed_memory``);
    - CUDA: fp32 matmuls on tensor cores (TF32: a 10-bit mantissa, as nanoGPT and the book's appendix use);
    - GPTModel weights in the memory order that backward passes and AdamW are fastest with.
    """
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(device)
    if isinstance(model, GPTModel):  # also a classifier: a GPTModel with a 2-way head
        model.use_training_layout()
    return model


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D+ parameters (matrices, embeddings) only, as in nanoGPT.

    ``fused``: one kernel updates every parameter (CUDA and CPU), instead of a dozen small operations per
    parameter; transformers' Trainer uses the same optimizer by default. Same maths, fewer passes over memory.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norm scales and shifts
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=device.type in ("cuda", "cpu"))


def _nan_message(step: int, checkpoint: str | None) -> str:
    kept = f"The last good checkpoint is {checkpoint}." if checkpoint else "No checkpoint had been written yet."
    return (f"The loss became NaN or infinite at step {step}, so training stopped. This usually means the "
            f"learning rate is too high: try a smaller one (or more warmup steps). {kept}")


class _Run:
    """The state of one call to ``train``; its ``events()`` generator is the loop itself."""

    def __init__(self, model: GPTModel, train_data, val_data, config: TrainConfig, stop, resume_from):
        self.config, self.stop = config, stop or threading.Event()
        self.rank, self.world_size = _distributed()
        self.device = pick_device(config.device)
        self.amp_dtype = _autocast_dtype(self.device, config.autocast)
        self.model = prepare_for_training(model, self.device)
        cfg = model.cfg
        self.context_length = config.context_length or cfg.context_length
        _check(self.context_length <= cfg.context_length,
               f"The context length {self.context_length} is longer than the model's ({cfg.context_length}).")
        train_set = as_dataset(train_data, self.context_length, "training")
        _check(train_set is not None and len(train_set) > 0, "There is no training data.")
        val_set = as_dataset(val_data, self.context_length, "validation")
        self.eval_train = fixed_batches(train_set, config.batch_size, config.eval_batches)
        self.eval_val = fixed_batches(val_set, config.batch_size, config.eval_batches)
        self.seq_len = int(self.eval_train[0][0].shape[1])
        _check(self.seq_len <= cfg.context_length,
               f"The sequences are {self.seq_len} tokens long, more than the model's context ({cfg.context_length}).")
        encode, decode = _text_codec(config)
        self.can_sample = config.sample_every > 0 and encode is not None and decode is not None
        self.optimizer = make_optimizer(model, config, self.device)
        self.step, self.tokens_seen, position = 0, 0, {"epoch": 0, "batch_index": 0}
        resume_from = resume_from or config.resume_from
        if resume_from:
            state, tensors = load_training_state(resume_from, model)
            self.optimizer.load_state_dict(_optimizer_from_files(tensors, state["optimizer"]))
            self.step, self.tokens_seen, position = state["step"], state["tokens_seen"], state["data_position"]
            _restore_rng(tensors, state["python_random_state"])
        else:
            torch.manual_seed(config.seed + self.rank)
            random.seed(config.seed + self.rank)
        self.start_step = self.step
        self.stream = BatchStream(train_set, config.batch_size, config.seed, self.rank, self.world_size, **position)
        self.tokens_per_step = config.batch_size * config.grad_accum_steps * self.seq_len * self.world_size
        self.train_model = self._wrap_model()
        self.last_checkpoint: str | None = None
        self.checkpoint_step: int | None = None
        self.tokenizer_saved = False
        self.peak = peak_flops(self.device)
        self.flops_per_token = flops_per_token(cfg, self.seq_len)

    def _wrap_model(self) -> nn.Module:
        wrapped = self.model
        if self.config.compile:
            wrapped = torch.compile(wrapped)
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=device_ids)
        return wrapped

    def _warnings(self) -> Iterator[WarningEvent]:
        if self.device.type == "mps":
            yield WarningEvent("Training on Apple MPS: losses on MPS can differ from CPU/CUDA, and some "
                               "operations fall back to the CPU. Compare with a CPU run if a curve looks odd.")
        if self.config.compile and self.device.type != "cuda":
            yield WarningEvent("torch.compile on CPU/MPS needs a C++ compiler and may be slower for small models.")
        if self.config.sample_every > 0 and not self.can_sample:
            yield WarningEvent("Samples need a tokenizer (or encode and decode functions); none was given.")

    # ----- one optimizer step -----------------------------------------------------------------------------
    def _train_step(self) -> tuple[float, float]:
        """Accumulate gradients over the micro-batches, clip, update. Returns (loss, grad_norm) before the update."""
        config, accum = self.config, self.config.grad_accum_steps
        lr = lr_at(self.step + 1, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for micro_step in range(accum):
            inputs, targets = (t.to(self.device, non_blocking=True) for t in self.stream.next_batch())
            last_micro = micro_step == accum - 1
            sync = contextlib.nullcontext() if last_micro or self.world_size == 1 else self.train_model.no_sync()
            with sync:
                loss = batch_loss(self.train_model, inputs, targets, self.amp_dtype)
                (loss / accum).backward()
            loss_sum += loss.detach()
        max_norm = config.grad_clip if config.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        stats = torch.stack([loss_sum / accum, grad_norm.float()])
        if self.world_size > 1:
            torch.distributed.all_reduce(stats)  # gradients are identical after DDP; losses differ per rank
            stats[0] /= self.world_size
            stats[1] /= self.world_size
        loss_value, norm_value = (float(v) for v in stats.tolist())
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.optimizer.step()
        return loss_value, norm_value

    def _should_stop(self, elapsed: float) -> str | None:
        config = self.config
        flags = torch.tensor([float(self.stop.is_set()),
                              float(config.time_budget_s is not None and elapsed >= config.time_budget_s)])
        if self.world_size > 1:  # every process must stop at the same step, or DDP would hang
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if self.step >= config.max_steps:
            return "max_steps"
        if config.max_tokens is not None and self.tokens_seen >= config.max_tokens:
            return "max_tokens"
        if flags[1] > 0:
            return "time_budget"
        if flags[0] > 0:
            return "stopped"
        return None

    def _eta(self, elapsed: float) -> float | None:
        steps_done = self.step - self.start_step
        if steps_done == 0:
            return None
        s_per_step = elapsed / steps_done
        remaining = [(self.config.max_steps - self.step) * s_per_step]
        if self.config.max_tokens is not None:
            remaining.append((self.config.max_tokens - self.tokens_seen) / self.tokens_per_step * s_per_step)
        if self.config.time_budget_s is not None:
            remaining.append(self.config.time_budget_s - elapsed)
        return max(0.0, min(remaining))

    def _checkpoint(self) -> Iterator[Event]:
        if self.config.out_dir is None or self.rank != 0 or self.checkpoint_step == self.step:
            return
        if not _all_finite(self.model):
            return  # never write NaN weights; the next step's loss reports the problem
        path = save_training_checkpoint(
            self.config.out_dir, self.model, self.optimizer, step=self.step, tokens_seen=self.tokens_seen,
            data_position=self.stream.position(), config=self.config, tokenizer_path=self._tokenizer_file())
        self.last_checkpoint, self.checkpoint_step = str(path), self.step
        yield CheckpointEvent(step=self.step, path=str(path))

    def _tokenizer_file(self) -> str | None:
        """Save the tokenizer once per run next to the checkpoints, so each checkpoint can carry a copy."""
        tokenizer = self.config.tokenizer
        if tokenizer is None or not hasattr(tokenizer, "save"):
            return None
        path = Path(self.config.out_dir) / "tokenizer.json"
        if not self.tokenizer_saved:
            path.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(path)
            self.tokenizer_saved = True
        return str(path)

    def _evaluate(self) -> Iterator[Event]:
        val_loss = evaluate(self.model, self.eval_val, self.device, self.amp_dtype)
        train_loss = evaluate(self.model, self.eval_train, self.device, self.amp_dtype)
        perplexity = math.exp(min(val_loss, 700.0)) if val_loss is not None else None
        yield EvalEvent(step=self.step, val_loss=val_loss, val_perplexity=perplexity, train_loss=train_loss)

    def _sample(self) -> Iterator[Event]:
        text = sample_text(self.model, self.config, self.device)
        yield SampleEvent(step=self.step, prompt=self.config.sample_prompt, text=text)

    # ----- the loop ---------------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        config = self.config
        yield StartEvent(device=str(self.device), autocast=str(self.amp_dtype).removeprefix("torch.")
                         if self.amp_dtype else None, n_params=self.model.num_parameters(),
                         tokens_per_step=self.tokens_per_step, max_steps=config.max_steps,
                         start_step=self.start_step, world_size=self.world_size)
        yield from self._warnings()
        self.model.train()
        start_time = time.perf_counter()
        window_tokens, window_time = 0, 0.0
        reason = "max_steps" if self.step >= config.max_steps else None
        while reason is None:
            step_start = time.perf_counter()
            loss, grad_norm = self._train_step()
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                yield DoneEvent(reason="nan", message=_nan_message(self.step + 1, self.last_checkpoint),
                                step=self.step, checkpoint_path=self.last_checkpoint)
                return
            self.step += 1
            self.tokens_seen += self.tokens_per_step
            window_tokens += self.tokens_per_step
            window_time += time.perf_counter() - step_start
            elapsed = time.perf_counter() - start_time
            reason = self._should_stop(elapsed)
            if self.step % config.log_every == 0 or self.step == self.start_step + 1 or reason is not None:
                tokens_per_s = window_tokens / max(window_time, 1e-9)
                mfu = (self.flops_per_token * tokens_per_s / (self.peak * self.world_size)) if self.peak else None
                yield StepEvent(step=self.step, epoch=round(self.stream.epochs_done, 4),
                                tokens_seen=self.tokens_seen, train_loss=loss, lr=lr_at(self.step, config),
                                grad_norm=grad_norm, tokens_per_s=tokens_per_s, elapsed_s=elapsed,
                                eta_s=self._eta(elapsed), mfu=mfu)
                window_tokens, window_time = 0, 0.0
            last = reason is not None
            if config.eval_every and (self.step % config.eval_every == 0 or last):
                yield from self._evaluate()
            if self.can_sample and (self.step % config.sample_every == 0 or last):
                yield from self._sample()
            if (config.checkpoint_every and self.step % config.checkpoint_every == 0) or last:
                yield from self._checkpoint()
            if not last:  # the stop flag may have been set while the events above were handled
                reason = self._should_stop(time.perf_counter() - start_time)
                if reason is not None:
                    if config.eval_every and self.step % config.eval_every != 0:
                        yield from self._evaluate()  # the final val loss, unless this step just had one
                    yield from self._checkpoint()
        yield DoneEvent(reason=reason, message=self._done_message(reason), step=self.step,
                        checkpoint_path=self.last_checkpoint)

    def _done_message(self, reason: str) -> str:
        config = self.config
        if reason == "max_steps":
            return f"Finished all {config.max_steps} steps."
        if reason == "max_tokens":
            return f"Reached the token budget ({self.tokens_seen:,} of {config.max_tokens:,} tokens)."
        if reason == "time_budget":
            return f"Reached the time budget of {config.time_budget_s:g} s after {self.step} steps."
        return f"Stopped at step {self.step}, as asked."


def train(model: GPTModel, train_data, val_data, config: TrainConfig, stop: threading.Event | None = None, *,
          resume_from: str | None = None) -> Iterator[Event]:
    """Train ``model`` and yield events: Start, Step, Eval, Sample, Checkpoint, Warning, and one final Done.

    ``train_data`` / ``val_data``: token ids (list or 1-D tensor, cut into windows of ``context_length``) or a
    dataset of (input, target) pairs such as ``SlidingWindowDataset``; ``val_data`` may be None.
    ``stop``: set it from another thread to end cleanly after the current step (a final checkpoint is written
    when ``config.out_dir`` is set). ``resume_from`` (or ``config.resume_from``): continue a checkpointed run.
    The model is moved to the chosen device. Bad settings raise ValueError before the first step.
    """
    run = _Run(model, train_data, val_data, config, stop, resume_from)  # validates before any event
    return run.events()


# ---------------------------------------------------------------------------------------------------------------
# Command line (also under torchrun)
# ---------------------------------------------------------------------------------------------------------------


class ByteTokenizer:
    """The simplest tokenizer: one id per UTF-8 byte (vocab 256). Handy for quick runs and tests."""

    vocab_size = 256
    eot_id = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def load_corpus(name: str) -> str:
    """'shakespeare' (packaged), 'verdict' (downloaded once) or a path to a UTF-8 text file."""
    if name == "shakespeare":
        from gpt_core.data import shakespeare_text

        return shakespeare_text()
    if name == "verdict":
        from gpt_core.corpora import the_verdict_text

        return the_verdict_text()
    path = Path(name)
    _check(path.is_file(), f"Unknown corpus {name!r}: use shakespeare, verdict or the path of a text file.")
    return path.read_text(encoding="utf-8")


def load_tokenizer(spec: str, text: str):
    """'gpt2', 'bytes', 'bpe:4096' (trained on the corpus) or the path of a saved tokenizer .json."""
    from gpt_core.tokenizer import BPETokenizer

    if spec == "gpt2":
        return BPETokenizer.gpt2()
    if spec == "bytes":
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        return BPETokenizer.train(text, int(spec.removeprefix("bpe:")))
    _check(Path(spec).is_file(), f"Unknown tokenizer {spec!r}: use gpt2, bytes, bpe:<vocab size> or a .json path.")
    return BPETokenizer.load(spec)


def encode_corpus(tokenizer, text: str) -> list[int]:
    """Token ids of a whole corpus, through tiktoken's fast path when the tokenizer offers one.

    `BPETokenizer.as_tiktoken()` gives identical ids (tested), only many times faster on megabytes of text.
    """
    if hasattr(tokenizer, "as_tiktoken"):
        return tokenizer.as_tiktoken().encode_ordinary(text)
    return tokenizer.encode(text)


# Named command-line settings. `--recipe book-ch5` is the book's chapter-5 run: GPT-2 small trained from
# scratch on "The Verdict" (needs the internet once), context 256, AdamW lr 4e-4 and weight decay 0.1 at a
# constant rate, no gradient clipping, batch 2, dropout 0.1, no qkv bias, 10 epochs, and the book's model: an
# untied output head and PyTorch's default init (162M parameters at context 256). The 5,145 tokens give 4,630
# for training: 18 windows of 256 -> 9 batches of 2 per epoch -> 90 steps. The book ends near train 0.57 / val 6.4.
RECIPES: dict[str, dict] = {
    "book-ch5": dict(
        preset="gpt2-small", corpus="verdict", tokenizer="gpt2", context_length=256, drop_rate=0.1,
        qkv_bias=False, tie_weights=False, init="pytorch", lr=4e-4, min_lr=4e-4, warmup=0, weight_decay=0.1,
        grad_clip=0.0, batch_size=2, max_steps=90, eval_every=5, autocast="off",
    ),
}


def _yes_no(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpt_core.train", description="Pretrain a small GPT.")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="named settings (the other options still override them)")
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--corpus", default="shakespeare", help="shakespeare, verdict or a text file path")
    parser.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2, bytes, bpe:4096 or a tokenizer .json")
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--emb-dim", type=int, default=None)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--n-heads", type=int, default=None)
    parser.add_argument("--drop-rate", type=float, default=None)
    parser.add_argument("--qkv-bias", type=_yes_no, default=None)
    parser.add_argument("--tie-weights", type=_yes_no, default=None, help="share the token embedding and output head")
    parser.add_argument("--init", choices=("gpt2", "pytorch"), default=None,
                        help="gpt2: normal(0, 0.02) as GPT-2; pytorch: PyTorch's layer defaults, as the book's model "
                             "(default: the preset's)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this; 0: no clipping")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--min-lr", type=float, default=None)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--sample-every", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--autocast", default="auto", choices=AUTOCAST_CHOICES)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default=None, help="checkpoint folder")
    parser.add_argument("--resume", default=None, help="a checkpoint folder or an earlier --out folder")
    args = parser.parse_args(argv)
    if args.recipe:  # the recipe's values become the defaults; options given on the command line still win
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    return args


def _setup_distributed() -> tuple[int, int, str | None]:
    """Under torchrun: join the process group (nccl on CUDA, gloo on CPU). Returns (rank, world, device)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group("nccl")
        device = f"cuda:{local_rank}"
    else:
        torch.distributed.init_process_group("gloo")
        device = "cpu"
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def main(argv=None) -> int:
    from tqdm import tqdm

    args = _parse_args(argv)
    rank, world_size, ddp_device = _setup_distributed()
    try:
        text = load_corpus(args.corpus)[: args.max_chars]
        tokenizer = load_tokenizer(args.tokenizer, text)
        overrides = {"vocab_size": tokenizer.vocab_size}
        for name in ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "qkv_bias", "tie_weights",
                     "init"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        torch.manual_seed(args.seed)  # the same initial weights on every process
        model = GPTModel(GPTConfig.preset(args.preset, **overrides))
        ids = encode_corpus(tokenizer, text)
        split = int(0.9 * len(ids))
        config = TrainConfig(
            lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup, max_steps=args.max_steps,
            weight_decay=args.weight_decay, grad_clip=args.grad_clip or None,
            max_tokens=args.max_tokens, time_budget_s=args.time_budget, batch_size=args.batch_size,
            grad_accum_steps=args.grad_accum, eval_every=args.eval_every, sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every, out_dir=args.out, resume_from=args.resume, seed=args.seed,
            device=ddp_device or args.device, autocast=args.autocast, compile=args.compile, tokenizer=tokenizer,
        )
        events = train(model, ids[:split], ids[split:], config)
        bar = tqdm(total=config.max_steps, disable=rank != 0, unit="step")
        for event in events:
            if rank != 0:
                continue
            if isinstance(event, StartEvent):
                bar.n = event.start_step
                bar.write(f"{event.n_params:,} parameters on {event.device} x{event.world_size}, "
                          f"{event.tokens_per_step:,} tokens per step")
            elif isinstance(event, StepEvent):
                bar.update(event.step - bar.n)
                bar.set_postfix(loss=f"{event.train_loss:.3f}", lr=f"{event.lr:.2e}",
                                tok_s=f"{event.tokens_per_s:,.0f}")
            elif isinstance(event, EvalEvent):
                val = f"{event.val_loss:.3f} (perplexity {event.val_perplexity:.1f})" if event.val_loss else "-"
                bar.write(f"step {event.step}: train loss {event.train_loss:.3f}, val loss {val}")
            elif isinstance(event, SampleEvent):
                bar.write(f"step {event.step} sample: {event.text!r}")
            elif isinstance(event, CheckpointEvent | WarningEvent):
                bar.write(f"{event.kind}: {getattr(event, 'path', None) or getattr(event, 'message', '')}")
            elif isinstance(event, DoneEvent):
                bar.close()
                print(f"done ({event.reason}): {event.message} checkpoint: {event.checkpoint_path}")
                return 1 if event.reason == "nan" else 0
        return 0
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
