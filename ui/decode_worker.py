"""Generation in a second process, so that thirty students' generations do not queue for one interpreter.

A small model's decoding is mostly Python: tens of tiny torch calls per token. Python threads share one
interpreter lock, so on a busy server every generation, and every other student's view, waits for it in turn.
``start()`` (app.py calls it) opens one worker process that builds the built-in models itself; then
``worker_steps(request)`` returns all the ``GenerationStep``s of a request at once (30 tokens of the bundled
model take about 60 ms), and the tab shows them as it shows streamed ones.

It returns None, and the tab generates in its own process as before, when the worker is not started (tests,
scripts), for models the worker does not have (GPT-2 from the hub, a student's own model), and if the worker
broke (it is started again for the next request).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from gpt_core.generate import GenerationStep, stream_generate

log = logging.getLogger("llm_lab")

WAIT_S = 60  # a request that waits longer than this for the worker gets a message instead

_pool: ProcessPoolExecutor | None = None
_labels: frozenset[str] = frozenset()
_lock = threading.Lock()


def _exit_with_parent(parent: int, check_s: float = 5.0) -> None:
    """In the worker: end once the server that started it is gone (killed without a clean ``stop()``), so no
    orphan keeps its memory and its CPU."""
    while os.getppid() == parent:
        time.sleep(check_s)
    os._exit(0)


def _worker_setup() -> None:
    """In the worker: one torch thread, tiny numbers flushed to zero (as in the server), then the bundled model,
    and its start-up objects frozen out of the garbage collector; a watchdog thread ends the worker with its server."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="exit-with-server", daemon=True).start()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from ui.models import DEFAULT_CHOICE, load_choice
    from ui.sessions import steady_gc

    load_choice(DEFAULT_CHOICE)  # built now, not during the first student's request
    steady_gc()  # its full garbage collections walk only what generations make (ui/sessions.py)


def _generate(label: str, ids: list[int], max_new_tokens: int, temperature: float, top_k: int | None,
              top_p: float | None, seed: int, top_n: int) -> list[GenerationStep]:
    """In the worker: every step of one generation."""
    from ui.models import load_choice

    model = load_choice(label).model
    return list(stream_generate(model, torch.tensor(ids), max_new_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, seed=seed, eos_id=None, top_n=top_n, use_cache=True))


def start(labels: list[str]) -> None:
    """Open the worker for the models named in ``labels`` (built-in ones: the worker builds them itself)."""
    global _pool, _labels
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_setup)
        _labels = frozenset(labels)


def stop() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def worker_steps(label: str, ids: list[int], max_new_tokens: int, temperature: float, top_k: int | None,
                 top_p: float | None, seed: int, top_n: int) -> list[GenerationStep] | None:
    """Every step of the generation, computed in the worker; None when the worker cannot do it."""
    with _lock:
        pool = _pool if label in _labels else None
    if pool is None:
        return None
    try:
        future = pool.submit(_generate, label, ids, max_new_tokens, temperature, top_k, top_p, seed, top_n)
        return future.result(timeout=WAIT_S)
    except TimeoutError:
        raise ValueError(f"The server is very busy: your text was not ready within {WAIT_S} s. "
                         f"Try again in a moment.") from None
    except BrokenProcessPool:
        log.warning("the generation worker stopped; starting a new one and generating in the server")
        stop()
        start(list(_labels))
        return None
