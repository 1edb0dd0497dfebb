"""Programmatic use: what scripts (gradio_client) and agents (MCP) need from every tab.

- ``tool(handler, name)``: an event handler wrapped by ``friendly`` whose ``__name__`` is ``name``. Gradio names
  an MCP tool after the handler's ``__name__`` (and adds ``_1``, ``_2`` to repeats: three tabs' ``start_run``
  became ``start_run``, ``start_run_1``, ``start_run_2``), so every public endpoint's handler is named after its
  ``api_name``, and its docstring (with an ``Args:`` section) is the tool's description.
- ``RunTimer``: the run tabs' ``gr.Timer`` with a label, so the timer's value in an endpoint's outputs is named
  on the API page instead of ``value_348``.
- ``wait_for_run(owner, history)``: the synchronous run endpoints (``/pretrain_run``, ``/classify_run``,
  ``/instruct_run``) start a job through the server's one job manager (its caps, queue and minute limit hold),
  then wait here until it ends, at most ``wait_limit_s()``; ``run_summary(history, ...)`` is the summary dict
  they return.

- ``model_zip(model, tokenizer, stem)``: the file a fine-tuning run hands out (``/classify_run``, ``/instruct_run``
  and the tabs' download buttons): model.safetensors + config.json (``save_checkpoint``, or ``save_classifier``)
  + lab_tokenizer.json, zipped in a fresh folder under ``MODEL_ZIPS_DIR`` in the system's temp folder. Gradio
  serves its own copy from its cache (app.py's ``CACHE_CLEANING`` removes those after an hour); our folders go
  after ``ui.downloads.MAX_AGE_S`` or beyond ``MAX_MODEL_ZIPS_BYTES`` together, and a model over
  ``MAX_MODEL_ZIP_BYTES`` is refused (the summary's notes say so).

A run started by a script belongs to the script's Gradio session (``ui.runs.owner_of`` with no browser id):
no browser state is needed, and nobody else can poll, stop or use it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from gpt_core.checkpoints import save_checkpoint
from gpt_core.files import human_size
from ui.budgets import env_number
from ui.common import friendly
from ui.downloads import new_download_folder
from ui.run_tab import RunHistory
from ui.runs import job_manager
from visualizations.compare import safe_file_stem

# The synchronous run endpoints wait in threads of their own queue: as many at once as the server runs jobs
# (LLM_LAB_MAX_RUNS), so a script's run never takes a thread from the explore views.
SYNC_RUN_QUEUE = "sync-runs"
STOP_GRACE_S = 60.0  # after the wait limit, a run is asked to stop and given this long to write its checkpoint
# Fine-tuned models handed out as zips: one at most MAX_MODEL_ZIP_BYTES (GPT-2 small's 124M weights in float32,
# about 500 MB, fit; GPT-2 medium's 1.4 GB do not), all of them together at most MAX_MODEL_ZIPS_BYTES.
MODEL_ZIPS_DIR = Path(os.environ.get("LLM_LAB_MODEL_ZIPS_DIR") or Path(tempfile.gettempdir()) / "llm_lab_model_zips")
MAX_MODEL_ZIP_BYTES = int(env_number("LLM_LAB_MAX_MODEL_ZIP_MB", 600) * 1e6)
MAX_MODEL_ZIPS_BYTES = int(env_number("LLM_LAB_MODEL_ZIPS_MB", 2000) * 1e6)


def tool(handler: Callable, name: str) -> Callable:
    """``friendly(handler)`` named ``name``: the MCP tool's name (the endpoint's api_name) and its description
    (the handler's docstring).

    >>> def shout(text: str) -> str:
    ...     '''The text in capitals.'''
    ...     return text.upper()
    >>> named = tool(shout, "shout_text")
    >>> named.__name__, named.__doc__, named("hi")
    ('shout_text', 'The text in capitals.', 'HI')
    """
    wrapped = friendly(handler)
    wrapped.__name__ = wrapped.__qualname__ = name
    return wrapped


def RunTimer(value: float = 1.0, *, active: bool = True,  # noqa: N802 - used like the component it makes
             label: str = "poll again (seconds; 0 = done)") -> gr.Timer:
    """A ``gr.Timer`` (the page polls its run with it) whose value in an endpoint's outputs has a name.

    gr.Timer takes no label, so the label is added to the config the API page and clients read. (A subclass
    would do the same, but Gradio writes a .pyi stub beside the module of every component class.)
    """
    timer = gr.Timer(value, active=active)
    timer.label = label
    config = timer.get_config
    timer.get_config = lambda *args, **kwargs: {**config(*args, **kwargs), "label": label}
    return timer


def sync_run_limit() -> int:
    """How many synchronous runs wait at once: the server's number of runs at a time."""
    return job_manager().max_running


def wait_limit_s() -> float:
    """How long a synchronous run endpoint waits: the server's minutes per run, plus as long again for a run
    ahead of it in the queue (a run that is still going then is stopped and returns what it has)."""
    return 2 * job_manager().max_minutes_cap * 60


def wait_for_run(owner: str, history: RunHistory, limit_s: float | None = None) -> RunHistory:
    """Wait until the job behind ``history`` has ended (stopping it after ``limit_s``), fold all its events."""
    manager = job_manager()
    view = manager.wait(history.job_id, owner, timeout=wait_limit_s() if limit_s is None else limit_s)
    if not view.done:
        manager.stop(history.job_id, owner)
        view = manager.wait(history.job_id, owner, timeout=STOP_GRACE_S)
    history.fold(manager.poll(history.job_id, owner, history.since))
    return history


def finite(value) -> float | None:
    """A number for JSON: None for a missing, NaN or infinite value.

    >>> finite(2.5), finite(float("nan")), finite(None)
    (2.5, None, None)
    """
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_summary(history: RunHistory, seconds: float, settings: dict, **metrics) -> dict:
    """What a synchronous run returns: its job, how it ended, its steps, losses, speed and time, and settings.

    ``metrics``: the run kind's own numbers (accuracy, exact match), added as they are.
    """
    last_eval = history.evals[-1] if history.evals else (None, None, None)
    return {
        "job_id": history.job_id,
        "status": history.status,  # done, stopped or failed
        "reason": history.reason,  # max_steps, time_budget, stopped, nan, ...
        "message": history.error or history.done,
        "notes": [note for note in (history.start_note, history.note) if note] + list(history.warnings),
        "steps": history.step,
        "max_steps": history.max_steps,
        "final_batch_loss": finite(history.step_losses[-1][1]) if history.step_losses else None,
        "final_train_loss": finite(last_eval[1]),
        "final_val_loss": finite(last_eval[2]),
        "tokens_per_s": finite(history.tokens_per_s),
        "tokens_seen": history.tokens_seen,
        "device": history.device,
        "n_params": history.n_params,
        "seconds": round(seconds, 2),
        "settings": settings,
        **metrics,
    }


class Stopwatch:
    """Seconds since it was made: ``Stopwatch().seconds``."""

    def __init__(self):
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def current_job_id() -> str:
    """The id of the job this code runs in (ui.jobs names each job's thread after its job id)."""
    return threading.current_thread().name


def model_zip(model, tokenizer, stem: str, save: Callable = save_checkpoint, **save_options) -> str:
    """Save ``model`` with ``save(model, folder, tokenizer_path=..., **save_options)`` (``save_checkpoint`` or
    ``gpt_core.classify.save_classifier``) and zip the folder as ``<stem>.zip`` in a fresh download folder;
    returns the zip's path. A model over ``MAX_MODEL_ZIP_BYTES`` is refused with a ValueError saying so."""
    unique = {tensor.data_ptr(): tensor for tensor in model.state_dict().values()}  # a tied head counts once
    n_bytes = sum(tensor.numel() * tensor.element_size() for tensor in unique.values())
    if n_bytes > MAX_MODEL_ZIP_BYTES:
        raise ValueError(f"The fine-tuned model is {human_size(n_bytes)}, more than this server's limit of "
                         f"{human_size(MAX_MODEL_ZIP_BYTES)} for a download (LLM_LAB_MAX_MODEL_ZIP_MB).")
    folder = new_download_folder(MODEL_ZIPS_DIR, MAX_MODEL_ZIPS_BYTES)
    saved, tokenizer_path = folder / "model", None
    if hasattr(tokenizer, "save"):  # an LLM Lab BPETokenizer: the zip then holds everything to run the model
        tokenizer_path = folder / "lab_tokenizer.json"
        tokenizer.save(tokenizer_path)
    save(model, saved, tokenizer_path=tokenizer_path, **save_options)
    target = folder / f"{safe_file_stem(stem)}.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(saved.iterdir()):
            # float32 weights barely shrink (deflating 500 MB would take a CPU core ~20 s): stored as they are
            kind = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
            archive.write(path, arcname=path.name, compress_type=kind)
    shutil.rmtree(saved)
    if tokenizer_path is not None:
        tokenizer_path.unlink()
    return str(target)


def kept_by_run(store, owner: str, job_id: str, what: str):
    """The ``what`` (a classifier, a model) run ``job_id`` kept in ``store``, while it is this owner's latest;
    else a ValueError saying why."""
    kept = store.find(owner, "latest")
    if kept is None or kept.job_id != job_id:
        raise ValueError(f"this run kept no {what} (it diverged, or a newer run or the server's memory limit "
                         "replaced it).")
    return kept


def zip_or_note(make_zip: Callable[[], str], notes: list[str]) -> str | None:
    """``make_zip()``, or None with the reason added to ``notes`` (a model over the size limit, one gone)."""
    try:
        return make_zip()
    except ValueError as error:
        notes.append(f"No model file: {error}")
        return None
