"""What every tab that starts a background run shares: one job manager, the browser's id, torch's threads.

- ``job_manager()``: one ``JobManager`` for the whole server, so its caps (runs at once, steps, minutes) hold
  across every tab and every student.
- ``browser_id_state()``: one ``gr.BrowserState`` at the top level of the Blocks holding an id this server
  issued and signed for this browser. It survives a page refresh, so a refreshed page finds its runs again.
- ``owner_of(browser_id, request)``: the owner a job is started and polled with. The server decides it: a
  browser id counts only with this server's signature, so a client cannot claim another student's runs by
  sending their id; a client without a browser id (a script) owns what it starts in its Gradio session.
- ``pin_torch_threads()``: called at the start of each run, inside its thread; it also lowers the run's
  priority, so the explore views stay quick while runs train.

How a tab follows its run (the typed history, start/stop/poll/reattach) is in ``ui.run_tab``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading

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


def run_threads() -> int:
    """Threads for torch inside one run: LLM_LAB_TORCH_THREADS, else half the cores (1 on a 2-core machine).

    Two runs with every core each fight for the same cores, and torch can then run many times slower.
    """
    value = os.environ.get("LLM_LAB_TORCH_THREADS", "").strip()
    if value:
        return max(1, int(value))
    return max(1, min(8, (os.cpu_count() or 2) // 2))


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
    """Set torch's number of threads for the run that calls it (torch's setting is process-wide), and lower
    the priority of the run's thread."""
    threads = run_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if run_priority():
        lower_thread_priority(run_priority())


def queue_status(view: JobView) -> str | None:
    """A line about a job that is waiting for a free slot, else None."""
    if view.status == "queued":
        return (f"Waiting for a free slot: your run is number {view.position} in the queue "
                f"(this server runs {job_manager().max_running} at a time).")
    return None

