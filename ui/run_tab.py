"""The skeleton the Pretrain, Classify and Instruct tabs share: one typed run history and start/stop/poll/reattach.

Flow of a run: a tab starts a job (``RunTab.start``) -> the job manager's worker iterates the engine's typed
events -> each tick of the tab's ``gr.Timer`` polls the events since the last one (``RunTab.poll``) and folds
them into one ``RunHistory`` kept in the tab's ``gr.State`` -> the tab draws its views from the history's fields.

A tab keeps only what is its own: its inputs and checks, its job body, its status extras and its views.
``RunHistory`` is a plain dataclass of plain values and the engine's event objects, so Gradio can deep-copy it
per session.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gradio as gr

from gpt_core.events import AccuracyEvent, ExactMatchEvent, SnapshotEvent
from ui.jobs import JobView, RunFn
from ui.runs import job_manager, latest_job, owner_of, queue_status

GETTING_READY = "⏳ Getting ready: copying the model and measuring it before training…"
SPEED_WINDOW = 20  # the tokens/s shown is the median of the last 20 steps, so one slow step does not make it jump

SplitAccuracy = tuple[float, "float | None", "float | None"]  # (train, val, test) accuracy on every example


@dataclass
class RunHistory:
    """What a tab remembers about the run it follows; ``since`` is the index of the next event to poll."""

    job_id: str
    since: int = 0
    status: str = "queued"  # the job's: queued, running, done, failed, stopped
    max_steps: int = 1
    step: int = 0
    epoch: float = 0.0
    n_params: int | None = None
    device: str | None = None  # None until the StartEvent: the run is still getting ready
    eta_s: float | None = None
    step_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss)
    evals: list[tuple[int, float | None, float | None]] = field(default_factory=list)  # (step, train, val loss)
    warnings: list[str] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)  # (step, prompt + continuation)
    # the model's insides at log-spaced steps: the job's own event objects, read-only, so a deep copy of the
    # history shares them (SnapshotEvent.__deepcopy__) and a poll costs nothing for their ~60 KB each
    snapshots: list[SnapshotEvent] = field(default_factory=list)
    done: str | None = None  # the DoneEvent's message
    reason: str | None = None  # the DoneEvent's reason: max_steps, time_budget, stopped, nan, ...
    error: str | None = None  # the job's error when it failed
    note: str | None = None  # the job manager's note (a server limit stopped the run)
    start_note: str | None = None  # the tab's note when the run started (steps lowered to the server's cap)
    checkpoint: str | None = None  # the last checkpoint written (the final one after Done)
    # pretraining speed, from the step events
    recent_speeds: list[float] = field(default_factory=list)
    tokens_per_s: float | None = None  # the median of ``recent_speeds``
    mfu: float | None = None
    tokens_seen: int = 0
    # chapter 6: classification
    accuracy: list[tuple[int, float, float | None]] = field(default_factory=list)  # (step, train, val) in training
    baseline: SplitAccuracy | None = None  # the first final accuracy: before training
    final: SplitAccuracy | None = None  # the last final accuracy: after training
    confusion: list[list[int]] | None = None  # counts [true][predicted] on the test messages
    # chapter 7: instruction tuning
    before: ExactMatchEvent | None = None
    after: ExactMatchEvent | None = None

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    def fold(self, view: JobView) -> None:
        """Add a poll's new events (every kind ``gpt_core.events`` defines) and the job's state."""
        for event in view.events:
            kind = getattr(event, "kind", None)
            if kind == "start":
                self.max_steps, self.n_params, self.device = event.max_steps, event.n_params, event.device
            elif kind == "step":
                self._add_step(event)
            elif kind == "eval":
                self.evals.append((event.step, event.train_loss, event.val_loss))
            elif kind == "sample":
                self.samples.append((event.step, event.text))
            elif kind == "snapshot":
                self.snapshots.append(event)
            elif kind == "checkpoint":
                self.checkpoint = event.path
            elif kind == "warning":
                self.warnings.append(event.message)
            elif kind == "done":
                self.done, self.reason = event.message, event.reason
                self.checkpoint = event.checkpoint_path or self.checkpoint
            elif kind == "accuracy":
                self._add_accuracy(event)
            elif kind == "confusion":
                self.confusion = [list(row) for row in event.matrix]
            elif kind == "exact_match":
                if event.when == "before":
                    self.before = event
                else:
                    self.after = event
        self.since, self.status, self.error, self.note = view.next_since, view.status, view.error, view.note

    def _add_step(self, event) -> None:
        self.step_losses.append((event.step, event.train_loss))
        self.step, self.epoch, self.eta_s, self.tokens_seen = event.step, event.epoch, event.eta_s, event.tokens_seen
        self.recent_speeds = self.recent_speeds[-(SPEED_WINDOW - 1):] + [event.tokens_per_s]
        self.tokens_per_s = statistics.median(self.recent_speeds)
        # the MFU of the median speed, so that it moves with the speed shown
        self.mfu = event.mfu * self.tokens_per_s / event.tokens_per_s if event.mfu and event.tokens_per_s else event.mfu

    def _add_accuracy(self, event: AccuracyEvent) -> None:
        if not event.final:
            self.accuracy.append((event.step, event.train_accuracy, event.val_accuracy))
        elif self.baseline is None:
            self.baseline = (event.train_accuracy, event.val_accuracy, event.test_accuracy)
        else:
            self.final = (event.train_accuracy, event.val_accuracy, event.test_accuracy)

    def status_line(self, view: JobView | None = None, show_eta: bool = True, preparing: str = GETTING_READY) -> str:
        """Markdown on where the run is: queued, getting ready, running (step, epoch, time left), finished or
        failed; then the server's note, the run's warnings and the tab's start note, one paragraph each."""
        waiting = queue_status(view) if view is not None else None
        lines = [waiting] if waiting else [self._progress(show_eta, preparing)]
        if not waiting:
            lines += [f"⚠ {message}" for message in ([self.note] if self.note else []) + self.warnings]
        if self.start_note:
            lines.append(f"⚠ {self.start_note}")
        return "\n\n".join(lines)

    def _progress(self, show_eta: bool, preparing: str) -> str:
        if self.status == "failed":
            return f"❌ The run failed: {self.error}"
        if self.done:
            finished = self.status != "stopped" and self.reason not in ("stopped", "nan")
            return f"{'✅' if finished else '⏹'} {self.done}"
        if self.status == "stopped":
            return "⏹ Stopped before training began."
        if self.device is None:
            return preparing
        eta = f" · about {self.eta_s:.0f} s left" if show_eta and self.eta_s is not None and self.step else ""
        params = f" · {self.n_params:,} trainable parameters" if self.n_params else ""
        return (f"⏳ Running on {self.device} · step {self.step} / {self.max_steps} · epoch {self.epoch:.2f}"
                f"{params}{eta}")


def with_note(text: str, note: str | None) -> str:
    """``text``, and the note under it as a warning when there is one.

    >>> with_note("Started.", "Steps lowered to 20.")
    'Started.\\n\\n⚠ Steps lowered to 20.'
    """
    return f"{text}\n\n⚠ {note}" if note else text


StatusFn = Callable[[RunHistory, JobView], str]  # the tab's status Markdown
ViewsFn = Callable[[RunHistory, JobView, str], Sequence]  # the tab's views (figures, tables), given the owner


@dataclass(frozen=True)
class RunTab:
    """Start, stop, poll and reattach for one tab's runs; ``label`` starts every job label of the tab.

    ``n_views`` is how many outputs a poll redraws between the status and (history, timer).
    """

    label: str
    noun: str  # "classification run": in "There is no classification run going."
    n_views: int
    stopping: str = "Stopping after the current step…"
    busy: str = ""  # the message when a run is still going; by default "Your <noun> is still going: ..."

    def owner_for_start(self, history: RunHistory | None, browser_id: str | None,
                        request: gr.Request | None) -> str:
        """The owner of a new run; a ValueError while this page's last run is still going."""
        if history is not None and history.running:
            raise ValueError(self.busy or f"Your {self.noun} is still going: press Stop first, or wait until it "
                                          f"finishes.")
        return owner_of(browser_id, request)

    def start(self, owner: str, job: RunFn, detail: str, *, max_steps: int = 1,
              start_note: str | None = None) -> RunHistory:
        """Queue ``job`` for ``owner`` as "<label> · <detail>"; the history that follows it."""
        job_id = job_manager().start(owner, job, f"{self.label} · {detail}")
        return RunHistory(job_id, max_steps=max_steps, start_note=start_note)

    def stop(self, history: RunHistory | None, browser_id: str | None, request: gr.Request | None) -> str:
        if history is None or not history.running:
            return f"There is no {self.noun} going."
        job_manager().stop(history.job_id, owner_of(browser_id, request))
        return self.stopping

    def poll(self, history: RunHistory | None, browser_id: str | None, request: gr.Request | None,
             status: StatusFn, views: ViewsFn) -> tuple:
        """Fold the events since the last poll; outputs (status, *views, history, timer).

        A page without a history (refreshed) finds its latest run again. The views are redrawn only when new
        events arrived or the run ended (``gr.skip()`` otherwise), so a poll costs the run almost nothing;
        the timer stops when the run has ended.
        """
        owner = owner_of(browser_id, request)
        if history is None:
            view = latest_job(owner, self.label)
            if view is None:
                return (gr.skip(),) * (1 + self.n_views) + (None, gr.Timer(active=False))
            history = RunHistory(view.job_id)
        view = job_manager().poll(history.job_id, owner, history.since)
        history.fold(view)
        timer = gr.Timer(active=not view.done)
        if not view.events and not view.done:
            return status(history, view), *(gr.skip(),) * self.n_views, history, timer
        return status(history, view), *views(history, view, owner), history, timer

    def reattach(self, browser_id: str | None, request: gr.Request = None):
        """The page-load handler: (history reset to None, the timer on when this browser has a run to follow)."""
        if not browser_id:
            return None, gr.Timer(active=False)
        return None, gr.Timer(active=latest_job(owner_of(browser_id, request), self.label) is not None)
