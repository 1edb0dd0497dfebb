"""Training in chunks: the run ``gpt_core.train.train`` makes, cut into calls of a few steps each.

Replaces: ``gpt_core.train.train``'s one long generator, for a host that lends a GPU one function call at a time
(Hugging Face ZeroGPU: ``ui.zerogpu``). Each call (``train_chunk``) starts from a plain ``ChunkState`` (the
weights, AdamW's moments, the step, the data position and the random-number states, as CPU tensors and plain
values that pickle), moves it to the device, runs the book's ``training_loop`` for a few steps and returns the
new state on the CPU with the steps' events. ``train_in_chunks`` chains the calls and yields the events as
``train`` does. Tested equal: the same losses, number for number, as one unchunked run (tests/test_zerogpu.py).

    ChunkState.start(model)                                     the untrained weights, step 0
    train_chunk(job, state, ChunkPlan(steps=10, seconds=30))   -> ChunkResult(state, events, done, seconds)
    train_in_chunks(model, train_ids, val_ids, config, stop, call_chunk=...)   the events, as train() yields them

How a chunk ends: the loop asks its batches for the next step's first batch only after every event of the last
step (evaluation, sample, checkpoint, snapshot) has been handled, so the chunk's batches raise ``ChunkEnd`` at
that moment; no weight, moment, batch or random number of the next step has been touched yet.

A chunk knows nothing of the other calls: a stop asked for between calls is passed to the next call
(``ChunkPlan.stop_now``), which then runs one step and ends the run the way ``train`` does after a stop.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

from gpt_core.device import pick_device
from gpt_core.events import Event, StepEvent
from gpt_core.fast.apply import speed_up_for_training
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.train import Run, training_loop
from gpt_core.train_config import TrainConfig, check
from gpt_core.train_state import _rng_tensors, restore_rng

FIRST_CHUNK_STEPS = 10  # the first call measures the speed with a few steps; later calls fill their time
FILL = 0.6  # a chunk's steps are planned to take 60% of its stated seconds (the rest: start-up, a slow step)
MIN_SECONDS = 10  # the shortest duration stated for a call (setting up the device takes a few seconds)


class ChunkEnd(Exception):
    """Raised inside ``training_loop`` when it asks for a batch of a step beyond the chunk."""


@dataclass
class ChunkState:
    """Everything a run needs to go on, as CPU tensors and plain values (nothing that lives on a device)."""

    model: dict[str, torch.Tensor]  # the model's state_dict
    optimizer: dict | None = None  # AdamW's state_dict (None before the first step)
    step: int = 0
    tokens_seen: int = 0
    data_position: dict = field(default_factory=lambda: {"epoch": 0, "batch_index": 0})
    rng: dict[str, torch.Tensor] = field(default_factory=dict)  # torch's CPU (and CUDA) random-number states
    python_rng: list | None = None  # random.getstate(), as train_state.json keeps it
    last_checkpoint: str | None = None
    checkpoint_step: int | None = None
    snapshot_step: int | None = None
    step_seconds: list[float] = field(default_factory=list)  # Run.step_seconds, for the time-left estimate
    elapsed_s: float = 0.0  # training time of the calls so far (a StepEvent's elapsed_s goes on from it)
    seconds_per_step: float | None = None  # measured by the last call, including its evaluations and samples

    @classmethod
    def start(cls, model: GPTModel) -> ChunkState:
        """The state before the first step: the model's initial weights."""
        return cls(model=on_cpu(model.state_dict()))


@dataclass
class ChunkPlan:
    """One call: at most ``steps`` steps, planned to take at most ``seconds``; ``stop_now``: a stop was asked."""

    steps: int
    seconds: int
    stop_now: bool = False


@dataclass
class ChunkJob:
    """What every call of one run trains: the model's shape, the data, the settings (all of it pickles)."""

    model_cfg: GPTConfig
    train_data: object
    val_data: object
    config: TrainConfig
    fast: bool = True  # apply gpt_core.fast.speed_up_for_training, as the app's runs do


@dataclass
class ChunkResult:
    state: ChunkState
    events: list[Event]
    done: bool  # the run has ended (its DoneEvent is the last event)
    seconds: float  # the call's training time (after setting up)


def on_cpu(tree):
    """A state_dict (nested dicts, lists, tensors) with every tensor detached and on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: on_cpu(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(on_cpu(value) for value in tree)
    return tree


class UntilStep:
    """A run's batches that end the chunk (``ChunkEnd``) when the step after ``last_step`` asks for its first."""

    def __init__(self, batches, run: Run, last_step: int):
        self.batches, self.run, self.last_step = batches, run, last_step

    def next_batch(self):
        if self.run.step >= self.last_step:
            raise ChunkEnd
        return self.batches.next_batch()

    def __getattr__(self, name):  # position(), epochs_done, eval_batches(...): the real batches'
        return getattr(self.batches, name)


def check_chunkable(config: TrainConfig) -> None:
    check(config.seed is not None, "Training in chunks needs a seed: the book's batch order cannot be resumed.")
    check(config.time_budget_s is None, "Training in chunks counts steps, not seconds: leave time_budget_s unset.")


def train_chunk(job: ChunkJob, state: ChunkState, plan: ChunkPlan) -> ChunkResult:
    """Run at most ``plan.steps`` steps of the run from ``state``; the new state on the CPU and the events."""
    config = job.config if state.optimizer is None else replace(job.config, resume_from=None)
    check_chunkable(config)
    model = GPTModel(job.model_cfg)
    model.load_state_dict(state.model)
    if job.fast:
        speed_up_for_training(model, pick_device(config.device))
    run = Run(model, job.train_data, job.val_data, config, resume_from=None)  # seeds torch on the first call
    if state.optimizer is not None:  # a later call: go on where the last one stopped
        run.optimizer.load_state_dict(state.optimizer)
        run.step = run.start_step = state.step
        run.tokens_seen = state.tokens_seen
        run.batches.epoch, run.batches.batch_index = state.data_position["epoch"], state.data_position["batch_index"]
        restore_rng(state.rng, state.python_rng)
        run.last_checkpoint, run.checkpoint_step = state.last_checkpoint, state.checkpoint_step
        run.snapshot_step, run.step_seconds = state.snapshot_step, list(state.step_seconds)
    first_step, later_call = run.step, state.optimizer is not None
    run.batches = UntilStep(run.batches, run, first_step + max(1, plan.steps))
    stop = threading.Event()
    if plan.stop_now:
        stop.set()  # the loop ends after its next step, with the final evaluation and checkpoint
    events, done, started = [], False, time.perf_counter()
    try:
        for event in training_loop(run, stop):
            if later_call and event.kind in ("start", "warning"):
                continue  # said by the first call already
            if isinstance(event, StepEvent):
                event = replace(event, elapsed_s=event.elapsed_s + state.elapsed_s)
            events.append(event)
        done = True
    except ChunkEnd:
        pass
    seconds = time.perf_counter() - started
    steps_done = run.step - first_step
    new_state = ChunkState(
        model=on_cpu(run.model.state_dict()), optimizer=on_cpu(run.optimizer.state_dict()), step=run.step,
        tokens_seen=run.tokens_seen, data_position=run.batches.position(), rng=on_cpu(_rng_tensors()),
        python_rng=list(random.getstate()), last_checkpoint=run.last_checkpoint, checkpoint_step=run.checkpoint_step,
        snapshot_step=run.snapshot_step, step_seconds=list(run.step_seconds), elapsed_s=state.elapsed_s + seconds,
        seconds_per_step=seconds / steps_done if steps_done else state.seconds_per_step)
    return ChunkResult(new_state, events, done, seconds)


def next_plan(state: ChunkState, chunk_seconds: int, stop_now: bool = False) -> ChunkPlan:
    """The next call: as many steps as fill ``FILL`` of ``chunk_seconds`` at the measured speed, and a stated
    duration that fits them (at least ``MIN_SECONDS``, at most ``chunk_seconds``).

    >>> next_plan(ChunkState(model={}), 30)          # nothing measured yet: a few steps to measure
    ChunkPlan(steps=10, seconds=30, stop_now=False)
    >>> next_plan(ChunkState(model={}, seconds_per_step=0.05), 30)    # 0.6 * 30 s / 0.05 s
    ChunkPlan(steps=360, seconds=30, stop_now=False)
    >>> next_plan(ChunkState(model={}, seconds_per_step=0.05), 30, stop_now=True)   # one step, then the end
    ChunkPlan(steps=1, seconds=10, stop_now=True)
    """
    check(chunk_seconds >= MIN_SECONDS, f"A chunk needs at least {MIN_SECONDS} seconds, got {chunk_seconds}.")
    if stop_now:
        return ChunkPlan(steps=1, seconds=MIN_SECONDS, stop_now=True)
    if state.seconds_per_step is None:
        return ChunkPlan(steps=FIRST_CHUNK_STEPS, seconds=chunk_seconds)
    steps = max(1, int(FILL * chunk_seconds / max(state.seconds_per_step, 1e-9)))
    return ChunkPlan(steps=steps, seconds=chunk_seconds)


def fitted(plan: ChunkPlan, state: ChunkState, max_steps: int) -> ChunkPlan:
    """``plan`` for the steps the run still has: the last call states only the time its steps need.

    >>> fitted(ChunkPlan(steps=360, seconds=30), ChunkState(model={}, step=990, seconds_per_step=0.05), 1000)
    ChunkPlan(steps=10, seconds=10, stop_now=False)
    """
    steps = max(1, min(plan.steps, max_steps - state.step))
    if state.seconds_per_step is None or steps == plan.steps:
        return replace(plan, steps=steps)
    seconds = math.ceil(steps * state.seconds_per_step / FILL)
    return replace(plan, steps=steps, seconds=min(plan.seconds, max(MIN_SECONDS, seconds)))


ChunkCall = Callable[[ChunkJob, ChunkState, ChunkPlan], ChunkResult]


def train_in_chunks(model: GPTModel, train_data, val_data, config: TrainConfig, stop: threading.Event | None = None,
                    *, call_chunk: ChunkCall = train_chunk, chunk_seconds: int = 30,
                    fast: bool = True) -> Iterator[Event]:
    """Train ``model`` (its initial weights, on the CPU) in calls of ``call_chunk``; yield the events as ``train``.

    ``call_chunk(job, state, plan)``: ``train_chunk`` itself, or a wrapper that runs it elsewhere (a GPU lent
    for one call). A stop asked for during a call takes effect in the next one (one more step, then the end).
    The model passed in is not changed: the trained weights are in the last checkpoint (``config.out_dir``).
    """
    check_chunkable(config)
    job = ChunkJob(model.cfg, train_data, val_data, config, fast)
    state = ChunkState.start(model)
    stop = stop or threading.Event()
    while True:
        plan = fitted(next_plan(state, chunk_seconds, stop.is_set()), state, config.max_steps)
        result = call_chunk(job, state, plan)
        yield from result.events
        if result.done:
            return
        state = result.state
