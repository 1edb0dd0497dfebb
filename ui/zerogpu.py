"""Runs on a Hugging Face ZeroGPU Space: the GPU is lent for one decorated function call at a time.

What the ``spaces`` package (0.51) does, and what follows for the lab:

- ``spaces.GPU(duration=...)`` returns the function unchanged unless ``SPACES_ZERO_GPU`` is true
  (``spaces/zero/decorator.py``: ``_GPU``), so ``gpu_call`` costs nothing on a laptop or a CPU Space, and
  ``spaces`` is imported only on ZeroGPU (local runs need nothing new).
- On ZeroGPU each call asks the scheduler for a GPU for ``duration`` seconds (a number, or a function of the
  call's arguments), then runs the function in a forked worker process that holds the GPU
  (``spaces/zero/wrappers.py``: ``regular_function_wrapper``, ``Worker``). Arguments and the result travel
  pickled through queues: nothing changed in place in the worker comes back, only the return value. So a run's
  state goes in and comes back out as CPU tensors (``gpt_core.fast.chunks``), and each call trains one chunk
  that fits its duration.
- A call may come from any thread, but the user's quota is found from the Gradio request in a context
  variable (``request_var.get(None)`` -> ``client.schedule`` reads the ``X-IP-Token`` header); a plain thread
  has none, and its calls count against the Space's small anonymous allowance. A run's job thread therefore
  makes each call inside a copy of the context of the request that started the run (``chunked_job``).
- Functions must be decorated before ``launch()`` (``spaces/zero/__init__.py``: ``startup`` reports to
  ZeroGPU only if something is decorated), so the chunk function is decorated when this module is imported.
- CUDA must not be initialised before ``spaces`` is imported (``torch.is_in_bad_fork`` check); importing the
  app touches no CUDA function (tests/test_zerogpu.py).

Generation stays on the CPU: a small model's tokens take milliseconds, and each GPU call would first wait for a
GPU and spend the user's quota.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from gpt_core.fast.chunks import ChunkJob, ChunkPlan, ChunkState, train_chunk, train_in_chunks
from gpt_core.model import GPTModel
from gpt_core.train_config import TrainConfig
from ui.budgets import env_number
from ui.jobs import RunFn

log = logging.getLogger("llm_lab")

ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # set to "true" by Hugging Face on a ZeroGPU Space (the spaces package reads it)
# The duration each chunk's GPU call states: ZeroGPU refuses a call when the user's quota left is shorter, so a
# short chunk lets a student with little quota left still train (each call also waits a few seconds for a GPU).
CHUNK_SECONDS = int(env_number("LLM_LAB_ZEROGPU_CHUNK_S", 30, whole=True))


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU`` is 1, t or true, as the spaces package reads it)."""
    return os.environ.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "t", "true")


def gpu_call(duration_s: int | Callable[..., int]) -> Callable[[Callable], Callable]:
    """Decorator: on ZeroGPU ``spaces.GPU(duration=duration_s)``, elsewhere the function unchanged.

    ``duration_s``: seconds, or a function of the call's arguments that returns them (spaces calls it per call).

    >>> def double(x):
    ...     return 2 * x
    >>> gpu_call(20)(double) is double   # not on ZeroGPU: nothing changes
    True
    """
    def decorate(fn: Callable) -> Callable:
        if not on_zero_gpu():
            return fn
        try:
            import spaces
        except ImportError:
            log.warning("SPACES_ZERO_GPU is set but the spaces package is missing: %s runs without a GPU call.",
                        fn.__name__)
            return fn
        return spaces.GPU(duration=duration_s)(fn)

    return decorate


def stated_seconds(job: ChunkJob, state: ChunkState, plan: ChunkPlan) -> int:
    """The duration a chunk's GPU call states: its plan's (``gpt_core.fast.chunks.next_plan``)."""
    return plan.seconds


def on_cpu_on_zero_gpu(config):
    """``config`` (any settings dataclass with a ``device``) set to train on the CPU on ZeroGPU, else unchanged.

    For the runs that do not train in GPU calls yet (Classify, Instruct): outside a ``spaces.GPU`` call the
    main process's CUDA is ZeroGPU's emulation (``torch.cuda.is_available()`` is True there, so "auto" would
    pick it), and such a run would fail at its first step.
    """
    return replace(config, device="cpu") if on_zero_gpu() else config


def seeded_model(model_cfg, seed: int) -> GPTModel:
    """A model with the initial weights ``seed`` gives (``torch.manual_seed(seed)`` first, as the tabs' runs)."""
    torch.manual_seed(seed)
    return GPTModel(model_cfg)


# Decorated at import, before the app launches (see the module docstring).
train_chunk_on_gpu = gpu_call(stated_seconds)(train_chunk)


def chunked_job(make_model: Callable[[], GPTModel], train_data, val_data, config: TrainConfig, *,
                gpu_chunk: Callable | None = None, chunk_seconds: int | None = None) -> RunFn:
    """A job for the job manager that trains in GPU calls of one chunk each (call it inside the start request).

    ``make_model()`` builds the model with its initial weights on the CPU, in the job's thread. Each chunk runs
    in a copy of the calling request's context, so that ZeroGPU counts it against the quota of the student who
    started the run. ``gpu_chunk``: the decorated chunk function (``train_chunk_on_gpu`` by default).
    """
    context = contextvars.copy_context()
    gpu_chunk = gpu_chunk or train_chunk_on_gpu

    def call_chunk(job: ChunkJob, state: ChunkState, plan: ChunkPlan):
        return context.run(gpu_chunk, job, state, plan)

    def job(stop) -> Iterator:
        yield from train_in_chunks(make_model(), train_data, val_data, config, stop, call_chunk=call_chunk,
                                   chunk_seconds=chunk_seconds or CHUNK_SECONDS)

    return job
