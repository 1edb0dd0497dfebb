"""What every tab that starts a background run shares: one job manager, the browser's id, torch's threads.

- ``job_manager()``: one ``JobManager`` for the whole server, so its caps (runs at once, steps, minutes) hold
  across every tab and every student.
- ``browser_id_state()``: one ``gr.BrowserState`` at the top level of the Blocks holding an id this server
  issued and signed for this browser. It survives a page refresh, so a refreshed page finds its runs again.
- ``owner_of(browser_id, request)``: the owner a job is started and polled with. The server decides it: a
  browser id counts only with this server's signature, so a client cannot claim another student's runs by
  sending their id; a client without a browser id (a script) owns what it starts in its Gradio session.
- ``pin_torch_threads()`` / ``sharing_cores(events)``: called in each run's thread at its start and before each
  step. A lone run on a quiet server trains on every core at normal priority; once students explore (handlers
  wrapped in ``explore_view``) or a second run starts, every run shares the cores at a lower priority, so the
  explore views stay quick while runs train.

How a tab follows its run (the typed history, start/stop/poll/reattach) is in ``ui.run_tab``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator

import gradio as gr
import torch
from gradio.context import Context

from ui.budgets import env_number, idle_seconds
from ui.jobs import JobManager, JobView

BROWSER_ID_KEY = "llm_lab_browser_id"

_manager: JobManager | None = None
_manager_lock = threading.Lock()


def job_manager() -> JobManager:
    """The server's one JobManager (caps from LLM_LAB_MAX_RUNS, LLM_LAB_MAX_STEPS, LLM_LAB_MAX_MINUTES)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = JobManager(evict_after_s=idle_seconds())
        return _manager


log = logging.getLogger("llm_lab")


def _server_secret() -> bytes:
    """The key that signs browser ids: LLM_LAB_SECRET (ids then survive a restart), else random per start."""
    configured = os.environ.get("LLM_LAB_SECRET", "").strip()
    return configured.encode() if configured else secrets.token_bytes(32)


_SECRET = _server_secret()


def _signature(name: str) -> str:
    return hmac.new(_SECRET, name.encode(), hashlib.sha256).hexdigest()[:32]


def new_browser_id() -> str:
    """A fresh id for a browser: a random name and this server's signature of it."""
    name = f"browser-{secrets.token_hex(16)}"
    return f"{name}.{_signature(name)}"


def verified_browser(browser_id) -> str | None:
    """The name inside a browser id when this server signed it, else None.

    >>> verified_browser(new_browser_id()).startswith("browser-")
    True
    >>> verified_browser("browser-0123.not-a-signature") is None
    True
    """
    if not isinstance(browser_id, str) or len(browser_id) > 200 or "." not in browser_id:
        return None
    name, signature = browser_id.rsplit(".", 1)
    return name if hmac.compare_digest(signature, _signature(name)) else None


def keep_or_issue_browser_id(browser_id) -> str:
    """The page-load handler: keep a stored id this server signed, else issue a new one."""
    return browser_id if verified_browser(browser_id) else new_browser_id()


def browser_id_state() -> gr.BrowserState:
    """The Blocks' one BrowserState with this browser's id; every tab that starts runs gets the same one.

    app.py calls this first at the top level of the Blocks: a BrowserState inside a Tab would only load when
    the tab is opened. The page's load event gives a new browser its id.
    """
    root = Context.root_block
    if root is None:
        raise RuntimeError("browser_id_state() must be called while building a gr.Blocks.")
    state = getattr(root, "_llm_lab_browser_id", None)
    if state is None:
        state = gr.BrowserState(None, storage_key=BROWSER_ID_KEY)
        root._llm_lab_browser_id = state
        root.load(keep_or_issue_browser_id, state, state, api_name=False, queue=False)
    return state


def owner_of(browser_id: str | None, request: gr.Request | None = None) -> str:
    """The owner of this browser's runs: the name in its signed id, else (a script) its Gradio session.

    An id this server did not sign is refused, so nobody can act for another student by sending their id.
    """
    if browser_id:
        name = verified_browser(browser_id)
        if name is None:
            raise PermissionError("This page's id was not issued by this server (it may have restarted): "
                                  "reload the page to get a new one.")
        return name
    session = getattr(request, "session_hash", None)
    if session:
        return f"session-{session}"
    raise ValueError("This page has no browser id yet; reload the page and try again.")


def latest_job(owner: str, label_prefix: str) -> JobView | None:
    """This owner's most recent job whose label starts with ``label_prefix`` (to re-attach after a refresh)."""
    views = [view for view in job_manager().jobs_of(owner) if view.label.startswith(label_prefix)]
    return views[-1] if views else None


VIEWS_QUIET_S = 10.0  # a lone run takes every core once no explore view has been asked for this long
_last_view_at = -VIEWS_QUIET_S  # time.monotonic() of the latest explore-view request


def shared_threads() -> int:
    """Torch's threads while students explore: LLM_LAB_TORCH_THREADS, else half the cores (1 on a 2-core machine).

    Thirty students' requests already fill the cores; two threads per request on two busy cores cost 2-6x the
    CPU (bench/classroom.py), and two runs with every core each fight for the same cores.
    """
    value = fixed_threads()
    return value if value else max(1, min(8, (os.cpu_count() or 2) // 2))


def fixed_threads() -> int | None:
    """LLM_LAB_TORCH_THREADS when set: one thread count for runs and views alike, else None."""
    value = os.environ.get("LLM_LAB_TORCH_THREADS", "").strip()
    return max(1, int(value)) if value else None


def run_threads() -> int:
    """Threads for torch inside a run, decided again before every step (``sharing_cores``): every core (up to 8)
    while the server is quiet (``server_is_busy``; a teacher's demo: the default Pretrain run trains about 1.4x
    faster on both cores of a 2-core server), else ``shared_threads()``. Torch's thread count is process-wide,
    so the views get the same count meanwhile."""
    if fixed_threads() or server_is_busy():
        return shared_threads()
    return lone_run_threads()


def server_is_busy() -> bool:
    """True while students explore (an explore view was asked for in the last ``VIEWS_QUIET_S`` seconds) or
    more than one run is going."""
    return time.monotonic() - _last_view_at <= VIEWS_QUIET_S or job_manager().running_count() > 1


def lone_run_threads() -> int:
    """Threads for a run alone on a quiet server: every core, up to 8."""
    return max(1, min(8, os.cpu_count() or 2))


def sharing_cores(events: Iterator) -> Iterator:
    """Pass a run's events on, calling ``pin_torch_threads`` again before each next step: a lone run on a quiet
    server trains on every core, and shares them as soon as students explore or a second run starts."""
    for event in events:
        pin_torch_threads()
        yield event


def explore_view(handler: Callable) -> Callable:
    """Mark a handler as an explore view (Tokenizer, Attention, Inside GPT, Generate): while students explore,
    runs train on ``shared_threads()`` and leave the other cores to the views."""

    def seen() -> None:
        global _last_view_at
        _last_view_at = time.monotonic()
        threads = shared_threads()
        if torch.get_num_threads() > threads:  # a lone run had every core: give them back now, not after its step
            torch.set_num_threads(threads)

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streamed(*args, **kwargs):
            for update in handler(*args, **kwargs):
                seen()
                yield update

        return streamed

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        seen()
        return handler(*args, **kwargs)

    return wrapped


def run_priority() -> int:
    """The niceness of a run's thread: LLM_LAB_RUN_NICE, default 10 (0 = as important as the views)."""
    return min(19, env_number("LLM_LAB_RUN_NICE", 10, whole=True))


def lower_thread_priority(nice: int) -> bool:
    """Make the calling thread yield the CPU to the server's other threads (Linux: per-thread niceness).

    Training threads then take the cores only when the explore views leave them free.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return True
    except (AttributeError, OSError, PermissionError):  # not Linux, or not allowed: runs share the CPU evenly
        return False


def pin_torch_threads() -> None:
    """Set torch's threads for the run that calls it (``run_threads``; torch's setting is process-wide). While the
    server is busy (``server_is_busy``), also lower the priority of the run's thread so the explore views stay
    quick. A lone run on a quiet server keeps its priority: niced, it would lose the cores to the page's own
    polls (13.6k instead of 18.8k tokens/s for the default Pretrain run), and a thread's niceness only goes up."""
    threads = run_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if run_priority() and server_is_busy():
        lower_thread_priority(run_priority())


def queue_status(view: JobView) -> str | None:
    """A line about a job that is waiting for a free slot, else None."""
    if view.status == "queued":
        return (f"Waiting for a free slot: your run is number {view.position} in the queue "
                f"(this server runs {job_manager().max_running} at a time).")
    return None


def serve_settings() -> None:
    """The process settings of a server (app.main; the demo benches too, to time what a server does)."""
    # One torch thread per request on a small server: thirty students' requests already fill the cores, and
    # two threads per request on two busy cores cost 2-6x the CPU (see bench/classroom.py).
    torch.set_num_threads(shared_threads())
    # Tiny numbers (denormals) take x86 CPUs many cycles each; a trained small model's activations have them, and
    # flushing them to zero made the bundled model generate 22% faster (a GPU's fast paths do the same).
    torch.set_flush_denormal(True)
    # A thread that waits for the interpreter lock after each small torch call waits up to this long: 1 ms
    # instead of Python's 5 ms lowered /generate's p95 under 30 students (bench/classroom.py).
    sys.setswitchinterval(0.001)
