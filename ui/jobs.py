"""Background runs: each job is a thread that iterates an event generator (such as ``train(...)``).

The app starts a job for a browser session (the *owner*), and a timer polls it for the events that arrived
since the last poll. A server has only so much compute, so:

- at most ``max_running`` jobs run at once; the next ones wait in a first-in-first-out queue,
- a request for more steps than ``max_steps_cap`` is clamped (``clamp_steps``), and a job that runs longer
  than ``max_minutes_cap`` minutes is asked to stop,
- finished jobs are forgotten ``evict_after_s`` seconds after they end, or sooner, oldest first, when more
  than ``max_finished`` have finished; running and queued jobs are never dropped.

Job ids carry a random part, so one student cannot guess another's, and every call checks the owner.

Example::

    manager = JobManager(max_running=1)
    job_id = manager.start("session-a", lambda stop: train(model, train_ids, val_ids, cfg, stop=stop), "nano")
    view = manager.poll(job_id, "session-a", since=0)    # JobView(status="running", events=[...], ...)
    manager.stop(job_id, "session-a")                     # the run ends after its current step

An exception inside a run marks that job "failed" with the message; the manager keeps working.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ui.budgets import env_number

RunFn = Callable[[threading.Event], Iterator[Any]]

QUEUED, RUNNING, DONE, FAILED, STOPPED = "queued", "running", "done", "failed", "stopped"
FINISHED = (DONE, FAILED, STOPPED)


@dataclass
class JobView:
    """What a poll returns: the job's state and the events that arrived since index ``since``.

    ``next_since`` is the index to pass to the next poll. ``position`` is the 1-based place in the queue
    while the job is "queued", else None.
    """

    job_id: str
    label: str
    status: str
    position: int | None
    events: list[Any]
    next_since: int
    done: bool
    error: str | None
    note: str | None = None


@dataclass
class _Job:
    job_id: str
    owner: str
    label: str
    fn: RunFn | None
    status: str = QUEUED
    events: list[Any] = field(default_factory=list)
    error: str | None = None
    note: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    started_at: float | None = None
    finished_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class JobManager:
    """Runs event generators in background threads, at most ``max_running`` at a time. Thread-safe."""

    def __init__(
        self,
        max_running: int | None = None,
        max_steps_cap: int | None = None,
        max_minutes_cap: float | None = None,
        evict_after_s: float = 1800.0,
        max_finished: int = 500,
    ):
        self.max_running = max_running if max_running is not None else env_number("LLM_LAB_MAX_RUNS", 2, whole=True)
        self.max_steps_cap = max_steps_cap if max_steps_cap is not None else env_number("LLM_LAB_MAX_STEPS", 2000, whole=True)
        self.max_minutes_cap = (
            max_minutes_cap if max_minutes_cap is not None else env_number("LLM_LAB_MAX_MINUTES", 10, whole=True)
        )
        if self.max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {self.max_running}.")
        self.evict_after_s = evict_after_s
        self.max_finished = max_finished
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # ----- caps -------------------------------------------------------------------------------------------
    def clamp_steps(self, requested: int) -> tuple[int, str | None]:
        """``(steps, note)``: the requested number of steps, lowered to the server cap with a note if needed.

        >>> JobManager(max_steps_cap=2000).clamp_steps(5000)
        (2000, 'This server allows at most 2000 steps per run; using 2000 instead of 5000.')
        """
        if requested < 1:
            raise ValueError(f"The number of steps must be at least 1, got {requested}.")
        if requested > self.max_steps_cap:
            note = (f"This server allows at most {self.max_steps_cap} steps per run; "
                    f"using {self.max_steps_cap} instead of {requested}.")
            return self.max_steps_cap, note
        return requested, None

    def clamp_minutes(self, requested: float) -> tuple[float, str | None]:
        """``(minutes, note)``: a time budget lowered to ``max_minutes_cap`` with a note if needed."""
        if requested <= 0:
            raise ValueError(f"The time budget must be more than 0 minutes, got {requested}.")
        if requested > self.max_minutes_cap:
            note = (f"This server allows at most {self.max_minutes_cap} minutes per run; "
                    f"using {self.max_minutes_cap} instead of {requested}.")
            return float(self.max_minutes_cap), note
        return float(requested), None

    # ----- public API -------------------------------------------------------------------------------------
    def start(self, owner: str, fn: RunFn, label: str = "") -> str:
        """Queue ``fn(stop_event)`` for ``owner``; it starts at once when a slot is free. Returns the job id."""
        if not owner:
            raise ValueError("A job needs an owner (the browser session that started it).")
        with self._lock:
            self._evict_old()
            job_id = f"job-{next(self._ids)}-{secrets.token_hex(4)}"
            self._jobs[job_id] = _Job(job_id=job_id, owner=owner, label=label, fn=fn)
            self._queue.append(job_id)
            self._launch_waiting()
            return job_id

    def poll(self, job_id: str, owner: str, since: int = 0) -> JobView:
        """The job's status and its events from index ``since`` on."""
        with self._lock:
            self._evict_old()
            job = self._get(job_id, owner)
            return self._view(job, since)

    def stop(self, job_id: str, owner: str) -> JobView:
        """Ask a job to stop: a queued job is cancelled, a running one ends after its current step."""
        with self._lock:
            job = self._get(job_id, owner)
            job.stop_event.set()
            if job.status == QUEUED:
                self._queue.remove(job_id)
                self._finish(job, STOPPED)
            return self._view(job, len(job.events))

    def jobs_of(self, owner: str) -> list[JobView]:
        """Every job this owner still has, oldest first (views without their events)."""
        with self._lock:
            self._evict_old()
            return [self._view(job, len(job.events)) for job in self._jobs.values() if job.owner == owner]

    def is_active(self, job_id: str) -> bool:
        """True while the job is queued or running (the server's budgets never evict such a job's data)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job is not None and job.status not in FINISHED

    def wait(self, job_id: str, owner: str, timeout: float | None = None) -> JobView:
        """Block until the job has finished (or ``timeout`` seconds passed); return its final view."""
        with self._lock:
            job = self._get(job_id, owner)
        job.finished.wait(timeout)
        with self._lock:
            return self._view(job, 0)

    # ----- internals --------------------------------------------------------------------------------------
    def _get(self, job_id: str, owner: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ValueError(f"There is no run {job_id!r} on this server: finished runs are cleared "
                             f"{self.evict_after_s / 60:g} minutes after they end. Start a new one.")
        if job.owner != owner:
            raise PermissionError(f"Job {job_id!r} belongs to another session; you can only see your own runs.")
        return job

    def _view(self, job: _Job, since: int) -> JobView:
        since = max(0, since)
        position = self._queue.index(job.job_id) + 1 if job.status == QUEUED else None
        return JobView(
            job_id=job.job_id, label=job.label, status=job.status, position=position,
            events=list(job.events[since:]), next_since=len(job.events), done=job.status in FINISHED,
            error=job.error, note=job.note,
        )

    def running_count(self) -> int:
        """How many jobs are running now (not queued, not finished)."""
        with self._lock:
            return self._running_count()

    def _running_count(self) -> int:
        return sum(job.status == RUNNING for job in self._jobs.values())

    def _launch_waiting(self) -> None:
        """Start queued jobs, oldest first, while there are free slots (call with the lock held)."""
        while self._queue and self._running_count() < self.max_running:
            job = self._jobs[self._queue.popleft()]
            job.status = RUNNING
            job.started_at = time.monotonic()
            job.thread = threading.Thread(target=self._run, args=(job,), name=job.job_id, daemon=True)
            job.thread.start()

    def _run(self, job: _Job) -> None:
        """Thread body: iterate the generator, keep its events, and never let an exception escape."""
        deadline = job.started_at + self.max_minutes_cap * 60
        status, error = DONE, None
        try:
            for event in job.fn(job.stop_event):
                with self._lock:
                    job.events.append(event)
                if time.monotonic() > deadline and not job.stop_event.is_set():
                    job.note = f"Stopped at the server's limit of {self.max_minutes_cap} minutes per run."
                    job.stop_event.set()
            if job.stop_event.is_set() and job.note is None:
                status = STOPPED
        except ValueError as err:  # gpt_core's plain-language messages about bad settings or data
            status, error = FAILED, str(err)
        except Exception as err:  # a broken run must not take the manager down
            status, error = FAILED, f"{type(err).__name__}: {err}"
        with self._lock:
            job.error = error
            self._finish(job, status)
            self._launch_waiting()

    def _finish(self, job: _Job, status: str) -> None:
        job.fn = None  # the run's closure (its model and data) is freed; the events stay for the student
        job.status = status
        job.finished_at = time.monotonic()
        job.finished.set()

    def _evict_old(self) -> None:
        """Forget finished jobs older than ``evict_after_s``, and the oldest beyond ``max_finished``."""
        now = time.monotonic()
        finished = sorted((job for job in self._jobs.values() if job.status in FINISHED),
                          key=lambda job: job.finished_at)
        extra = len(finished) - self.max_finished
        for rank, job in enumerate(finished):
            if rank < extra or now - job.finished_at > self.evict_after_s:
                del self._jobs[job.job_id]
