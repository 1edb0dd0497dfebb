"""Pretraining (chapter 5): the training loop, one generator that yields an event wherever nanoGPT prints.

One optimizer step, as in the book's ``train_model_simple``::

    optimizer.zero_grad()                                    forget the last step's gradients
    loss = cross_entropy(model(inputs), targets)             (B, T) ids -> (B, T, vocab) logits -> one number
    loss.backward()                                          the gradient of every weight
    clip_grad_norm_(model.parameters(), grad_clip)           no step longer than grad_clip
    optimizer.step()                                         AdamW moves every weight a little

``train(...)`` returns the generator; the app draws its events, the command line prints them::

    cfg = TrainConfig(lr=3e-4, warmup_steps=10, max_steps=200, batch_size=8, eval_every=20, out_dir="runs/nano")
    for event in train(model, train_ids, val_ids, cfg):
        print(event.to_dict())   # {'kind': 'step', 'step': 1, 'train_loss': 10.9, 'lr': 3e-05, ...}

Reproducibility: ``config.seed`` fixes the order of the batches (epoch e shuffles with ``seed + e``) and the
dropout masks (``torch.manual_seed(seed)`` when the run starts). The model is passed in already built, so
its initial weights come from whatever seed was set before building it. ``seed=None`` reseeds nothing and
reads the batches as the book does (``gpt_core.batches.BookBatches``): with the book's recipe (see
``gpt_core.train_cli.RECIPES``) the losses are the book's. Two runs in threads of one process share torch's
global random numbers (dropout), so they are not reproducible.

The pieces live next door: settings and schedule (``train_config``), events (``events``), batches
(``batches``), checkpoints and resuming (``train_state``), several processes (``distributed``), the command
line (``train_cli``: ``python -m gpt_core.train --help``). Speed-ups are applied to the model from outside
(``gpt_core.fast.speed_up_for_training``) and change no number beyond float rounding.
"""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gpt_core.batches import BatchStream, BookBatches, as_dataset
from gpt_core.device import pick_device
from gpt_core.distributed import (
    any_process,
    average_over_processes,
    rank_and_world_size,
    sync_gradients_unless,
    wrap_for_training,
)
from gpt_core.events import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    SampleEvent,
    SnapshotEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
)
from gpt_core.model import GPTModel, eval_mode
from gpt_core.snapshots import make_probe, take_snapshot
from gpt_core.train_config import (
    TrainConfig,
    check,
    flops_per_token,
    lr_at,
    peak_flops,
    training_autocast_dtype,
)
from gpt_core.train_state import all_finite, resume_training, save_training_checkpoint

ETA_SKIP = 3  # the first 3 steps are slow (memory is allocated): the time-left estimate leaves them out
ETA_WINDOW = 50  # ... and takes the median time of the last 50 steps


# ---------------------------------------------------------------- loss, evaluation, optimizer
def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, amp_dtype=None) -> torch.Tensor:
    """Mean cross-entropy of next-token predictions; logits (B, T, V) are compared in fp32."""
    with torch.autocast(device_type=inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())  # (B*T, V) against (B*T,)


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device, amp_dtype=None) -> float | None:
    """Mean loss over some batches, with dropout off; None when there are no batches."""
    if not batches:
        return None
    with eval_mode(model):
        losses = [batch_loss(model, x.to(device), y.to(device), amp_dtype).item() for x, y in batches]
    return sum(losses) / len(losses)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW. ``config.optimizer == "book"``: the book's ``AdamW(model.parameters(), lr, weight_decay=0.1)``.

    "lab" (nanoGPT's): weight decay on matrices and embeddings only (not biases, norm scales and shifts), and
    ``fused``: one kernel updates every parameter instead of a dozen small operations per parameter
    (transformers' Trainer does the same by default). Same maths, fewer passes over memory.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "book":
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norm scales and shifts
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=device.type in ("cuda", "cpu"))


def sample_text(model: GPTModel, config: TrainConfig, device: torch.device) -> str:
    """Greedy continuation of ``config.sample_prompt`` (deterministic: no random numbers are drawn)."""
    from gpt_core.generate import generate

    encode = config.encode or config.tokenizer.encode
    decode = config.decode or config.tokenizer.decode
    prompt_ids = list(encode(config.sample_prompt)) or [getattr(config.tokenizer, "eot_id", 0)]
    prompt_ids = prompt_ids[-(model.cfg.context_length - 1):]
    out = generate(model, torch.tensor(prompt_ids, device=device), config.sample_tokens, temperature=0.0)
    return decode(out.tolist())


# ---------------------------------------------------------------- the loop
def train(model: GPTModel, train_data, val_data, config: TrainConfig, stop: threading.Event | None = None, *,
          resume_from: str | None = None) -> Iterator[Event]:
    """Train ``model`` and yield events: Start, Step, Eval, Sample, Checkpoint, Warning, and one final Done.

    ``train_data`` / ``val_data``: token ids (list or 1-D tensor, cut into windows of ``context_length``) or a
    dataset of (input, target) pairs such as ``SlidingWindowDataset``; ``val_data`` may be None.
    ``stop``: set it from another thread to end cleanly after the current step (a final checkpoint is written
    when ``config.out_dir`` is set). ``resume_from`` (or ``config.resume_from``): continue a checkpointed run.
    The model is moved to the chosen device. Bad settings raise ValueError before the first step.
    """
    run = Run(model, train_data, val_data, config, resume_from)  # checks everything before any event
    return training_loop(run, stop or threading.Event())


def training_loop(run: Run, stop: threading.Event) -> Iterator[Event]:
    """The loop itself: one optimizer step per pass, then whatever is due (log, evaluate, sample, save)."""
    config, model, optimizer = run.config, run.model, run.optimizer
    yield run.start_event()
    yield from run.warnings()
    yield from run.snapshot()  # the untrained model, when config.snapshot_steps asks for step 0
    model.train()
    clock = StepClock()
    reason = "max_steps" if run.step >= config.max_steps else None  # a resumed run may have finished already
    while reason is None:
        clock.step_starts()
        # 1. this step's learning rate: linear warm-up, then cosine decay (lr_at)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(run.step + 1, config)
        # 2. forward and backward; the gradients of grad_accum_steps micro-batches add up
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=run.device)
        for micro_step in range(config.grad_accum_steps):
            inputs, targets = (t.to(run.device) for t in run.batches.next_batch())
            accumulating = micro_step < config.grad_accum_steps - 1
            with sync_gradients_unless(run.train_model, accumulating):
                micro_loss = batch_loss(run.train_model, inputs, targets, run.amp_dtype) / config.grad_accum_steps
                micro_loss.backward()
            loss += micro_loss.detach()
        # 3. clip: scale all gradients down together if their joint norm is above grad_clip
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
        loss, grad_norm = average_over_processes(torch.stack([loss, grad_norm.float()])).tolist()
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            yield run.nan_event()  # the weights were not updated: the last checkpoint is still good
            return
        # 4. update every weight
        optimizer.step()
        run.step += 1
        run.tokens_seen += run.tokens_per_step
        clock.step_done(run.tokens_per_step)
        reason = run.stop_reason(stop, clock)
        # 5. report: a step event, and an evaluation, a sample or a checkpoint when one is due
        if run.step % config.log_every == 0 or run.step == run.start_step + 1 or reason:
            yield run.step_event(loss, grad_norm, clock)
        if config.evaluates_after(run.step) or (reason and config.eval_every):
            yield run.evaluate()
        if run.can_sample and (run.step % config.sample_every == 0 or reason):
            yield run.sample()
        if (config.checkpoint_every and run.step % config.checkpoint_every == 0) or reason:
            yield from run.checkpoint()
        yield from run.snapshot(last=reason is not None)  # the model's insides at config.snapshot_steps
        if reason is None:  # a stop may have been asked for while the events above were handled
            reason = run.stop_reason(stop, clock)
            if reason is not None:
                if config.eval_every and not config.evaluates_after(run.step):
                    yield run.evaluate()  # the final losses, unless this step just had them
                yield from run.checkpoint()
    yield run.done_event(reason)


class StepClock:
    """Wall time since the start, and tokens per second over the steps since the last step event."""

    def __init__(self):
        self.start = self.step_start = time.perf_counter()
        self.window_tokens, self.window_seconds = 0, 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def step_starts(self) -> None:
        self.step_start = time.perf_counter()

    def step_done(self, tokens: int) -> None:
        self.window_tokens += tokens
        self.window_seconds += time.perf_counter() - self.step_start

    def tokens_per_s(self) -> float:
        """Tokens per second since the last call; events handled in between (evaluations) are not counted."""
        rate = self.window_tokens / max(self.window_seconds, 1e-9)
        self.window_tokens, self.window_seconds = 0, 0.0
        return rate


class Run:
    """What one call to ``train`` works with, made and checked before the first step: the device, the model
    (wrapped for DDP or torch.compile), the optimizer, the batches, and the counters."""

    def __init__(self, model: GPTModel, train_data, val_data, config: TrainConfig, resume_from: str | None):
        self.config = config
        self.rank, self.world_size = rank_and_world_size()
        self.device = pick_device(config.device)
        self.amp_dtype = training_autocast_dtype(self.device, config.autocast)
        self.model = model.to(self.device)
        cfg = model.cfg
        context_length = config.context_length or cfg.context_length
        check(context_length <= cfg.context_length,
              f"The context length {context_length} is longer than the model's ({cfg.context_length}).")
        train_set = as_dataset(train_data, context_length, "training")
        check(train_set is not None and len(train_set) > 0, "There is no training data.")
        val_set = as_dataset(val_data, context_length, "validation")
        self.seq_len = int(train_set[0][0].shape[-1])
        check(self.seq_len <= cfg.context_length,
              f"The sequences are {self.seq_len} tokens long, more than the model's context ({cfg.context_length}).")
        self.can_sample = config.sample_every > 0 and (config.tokenizer is not None or
                                                       (config.encode is not None and config.decode is not None))
        self.optimizer = make_optimizer(model, config, self.device)
        self.step, self.tokens_seen, position = 0, 0, {"epoch": 0, "batch_index": 0}
        resume_from = resume_from or config.resume_from
        if resume_from:
            check(config.seed is not None, "A run without a seed (the book's batch order) cannot be resumed.")
            self.step, self.tokens_seen, position = resume_training(resume_from, model, self.optimizer)
        elif config.seed is not None:
            torch.manual_seed(config.seed + self.rank)
            random.seed(config.seed + self.rank)
        self.start_step = self.step
        if config.seed is None:
            self.batches = BookBatches(train_set, val_set, config.batch_size, config.eval_batches)
        else:
            self.batches = BatchStream(train_set, config.batch_size, config.seed, self.rank, self.world_size,
                                       **position, val_set=val_set, n_eval=config.eval_batches)
        self.tokens_per_step = config.batch_size * config.grad_accum_steps * self.seq_len * self.world_size
        self.train_model = wrap_for_training(model, self.device, config.compile, self.world_size)
        self.last_checkpoint: str | None = None
        self.checkpoint_step: int | None = None
        self.peak = peak_flops(self.device)
        self.flops_per_token = flops_per_token(cfg, self.seq_len)
        self.last_step_at = (self.step, 0.0)  # (step, elapsed seconds) at the last step event, for eta_s
        self.step_seconds: list[float] = []  # the time of each of the last ETA_WINDOW steps
        self.probe = make_probe(config, model, train_data) if config.snapshot_steps and self.rank == 0 else None
        self.snapshot_step: int | None = None

    # ----- when to stop
    def stop_reason(self, stop: threading.Event, clock: StepClock) -> str | None:
        config = self.config
        flags = torch.tensor([float(stop.is_set()),
                              float(config.time_budget_s is not None and clock.elapsed() >= config.time_budget_s)])
        flags = any_process(flags)  # every process stops at the same step
        if self.step >= config.max_steps:
            return "max_steps"
        if config.max_tokens is not None and self.tokens_seen >= config.max_tokens:
            return "max_tokens"
        if flags[1] > 0:
            return "time_budget"
        return "stopped" if flags[0] > 0 else None

    def eta_s(self, elapsed: float) -> float | None:
        """Seconds left: the steps still to go times the median time of the last ``ETA_WINDOW`` steps.

        ``elapsed`` is the run's clock at this step event. The first ``ETA_SKIP`` steps are left out (they
        are slow while memory is allocated), and a median ignores the odd slow step (an evaluation, a sample,
        a busy CPU), so the estimate changes smoothly from one step event to the next. None until a step
        after the warm-up has been timed.
        """
        last_step, last_elapsed = self.last_step_at
        self.last_step_at = (self.step, elapsed)
        if last_step - self.start_step >= ETA_SKIP and self.step > last_step:
            seconds = (elapsed - last_elapsed) / (self.step - last_step)  # per step since the last event
            self.step_seconds = (self.step_seconds + [seconds])[-ETA_WINDOW:]
        if not self.step_seconds:
            return None
        s_per_step = statistics.median(self.step_seconds)
        remaining = [(self.config.max_steps - self.step) * s_per_step]
        if self.config.max_tokens is not None:
            remaining.append((self.config.max_tokens - self.tokens_seen) / self.tokens_per_step * s_per_step)
        if self.config.time_budget_s is not None:
            remaining.append(self.config.time_budget_s - elapsed)
        return max(0.0, min(remaining))

    # ----- events
    def start_event(self) -> StartEvent:
        return StartEvent(device=str(self.device), autocast=str(self.amp_dtype).removeprefix("torch.")
                          if self.amp_dtype else None, n_params=self.model.num_parameters(),
                          tokens_per_step=self.tokens_per_step, max_steps=self.config.max_steps,
                          start_step=self.start_step, world_size=self.world_size)

    def warnings(self) -> Iterator[WarningEvent]:
        if self.device.type == "mps":
            yield WarningEvent("Training on Apple MPS: losses on MPS can differ from CPU/CUDA, and some "
                               "operations fall back to the CPU. Compare with a CPU run if a curve looks odd.")
        if self.config.compile and self.device.type != "cuda":
            yield WarningEvent("torch.compile on CPU/MPS needs a C++ compiler and may be slower for small models.")
        if self.config.sample_every > 0 and not self.can_sample:
            yield WarningEvent("Samples need a tokenizer (or encode and decode functions); none was given.")

    def step_event(self, loss: float, grad_norm: float, clock: StepClock) -> StepEvent:
        tokens_per_s, elapsed = clock.tokens_per_s(), clock.elapsed()
        mfu = self.flops_per_token * tokens_per_s / (self.peak * self.world_size) if self.peak else None
        return StepEvent(step=self.step, epoch=round(self.batches.epochs_done, 4), tokens_seen=self.tokens_seen,
                         train_loss=loss, lr=lr_at(self.step, self.config), grad_norm=grad_norm,
                         tokens_per_s=tokens_per_s, elapsed_s=elapsed, eta_s=self.eta_s(elapsed), mfu=mfu)

    def evaluate(self) -> EvalEvent:
        train_loss = evaluate(self.model, self.batches.eval_batches("train"), self.device, self.amp_dtype)
        val_loss = evaluate(self.model, self.batches.eval_batches("val"), self.device, self.amp_dtype)
        perplexity = math.exp(min(val_loss, 700.0)) if val_loss is not None else None
        return EvalEvent(step=self.step, val_loss=val_loss, val_perplexity=perplexity, train_loss=train_loss)

    def sample(self) -> SampleEvent:
        text = sample_text(self.model, self.config, self.device)
        return SampleEvent(step=self.step, prompt=self.config.sample_prompt, text=text)

    def snapshot(self, last: bool = False) -> Iterator[SnapshotEvent]:
        """The model's insides (``gpt_core.snapshots``) at the steps ``config.snapshot_steps`` lists, and at the
        last step of a run stopped early; rank 0 only, never twice for one step, never of NaN weights."""
        due = self.step in self.config.snapshot_steps or last
        if self.probe is None or not due or self.snapshot_step == self.step:
            return
        if not all_finite(self.model):
            return  # the next step's loss reports the problem
        with eval_mode(self.model):
            sample = sample_text(self.model, self.config, self.device) if self.probe.prompt_ids else ""
            snapshot = take_snapshot(self.model, self.probe, self.step, sample)
        self.snapshot_step = self.step
        yield snapshot

    def checkpoint(self) -> Iterator[CheckpointEvent]:
        """Save the model, optimizer and data position (rank 0, never twice for one step, never NaN weights)."""
        config = self.config
        if config.out_dir is None or self.rank != 0 or self.checkpoint_step == self.step:
            return
        if not all_finite(self.model):
            return  # the next step's loss reports the problem
        path = save_training_checkpoint(
            config.out_dir, self.model, self.optimizer, step=self.step, tokens_seen=self.tokens_seen,
            data_position=self.batches.position(), config=config, tokenizer_path=self.tokenizer_file())
        self.last_checkpoint, self.checkpoint_step = str(path), self.step
        yield CheckpointEvent(step=self.step, path=str(path))

    def tokenizer_file(self) -> str | None:
        """The tokenizer, saved once per run next to the checkpoints, so that each checkpoint carries a copy."""
        tokenizer = self.config.tokenizer
        if tokenizer is None or not hasattr(tokenizer, "save"):
            return None
        path = Path(self.config.out_dir) / "lab_tokenizer.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(path)
        return str(path)

    def nan_event(self) -> DoneEvent:
        kept = (f"The last good checkpoint is {self.last_checkpoint}." if self.last_checkpoint
                else "No checkpoint had been written yet.")
        message = (f"The loss became NaN or infinite at step {self.step + 1}, so training stopped. This usually "
                   f"means the learning rate is too high: try a smaller one (or more warmup steps). {kept}")
        return DoneEvent(reason="nan", message=message, step=self.step, checkpoint_path=self.last_checkpoint)

    def done_event(self, reason: str) -> DoneEvent:
        config = self.config
        messages = {
            "max_steps": f"Finished all {config.max_steps} steps.",
            "max_tokens": f"Reached the token budget ({self.tokens_seen:,} of {config.max_tokens or 0:,} tokens).",
            "time_budget": f"Reached the time budget of {config.time_budget_s or 0:g} s after {self.step} steps.",
            "stopped": f"Stopped at step {self.step}, as asked.",
        }
        return DoneEvent(reason=reason, message=messages[reason], step=self.step,
                         checkpoint_path=self.last_checkpoint)


if __name__ == "__main__":  # python -m gpt_core.train: the command line lives in gpt_core/train_cli.py
    import runpy

    runpy.run_module("gpt_core.train_cli", run_name="__main__", alter_sys=True)
