"""Experiments in the Pretrain tab: switch one thing off, predict what it does, run, compare the runs.

- ``ablation_choices`` / ``explain_ablations``: the switches of ``gpt_core.ablations``, each with its sentence;
- ``check_ablations`` / ``check_prediction``: what a student (or an API client) asked for, checked;
- ``measured_effect`` / ``verdict``: after the run, the prediction beside what happened, against the unchanged
  run with the same settings (this page's, or the measured reference of the default settings);
- ``RunRecord``: one of this page's runs as plain values (its settings, its curve, its final losses), the rows
  of the side-by-side table and the lines of the overlaid plot (``visualizations.compare``).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from gpt_core.ablations import ABLATIONS
from gpt_core.events import EvalEvent, StepEvent
from visualizations.compare import RunCurve

MAX_ABLATIONS = 4  # a run changes at most 4 things at once (one is the experiment; more and nothing is learnt)
SAME_WITHIN = 0.05  # val losses closer than this (nats) count as "about the same": seeds alone move it ~0.02
PREDICTIONS = {  # value -> what the student picks
    "lower": "lower: it learns better",
    "about the same": "about the same",
    "higher": "higher: it learns worse",
    "breaks": "it breaks: NaN, or the loss stays near the start",
}
NO_PREDICTION = "no prediction"


# ---------------------------------------------------------------------------------------------------------------
# Before the run: the switches and the prediction
# ---------------------------------------------------------------------------------------------------------------


def ablation_choices() -> list[tuple[str, str]]:
    """(title, name) of every switch, for a CheckboxGroup."""
    return [(ablation.title, name) for name, ablation in ABLATIONS.items()]


def prediction_choices() -> list[tuple[str, str]]:
    return [(NO_PREDICTION, NO_PREDICTION)] + [(words, value) for value, words in PREDICTIONS.items()]


def check_ablations(names) -> tuple[str, ...]:
    """The switches asked for, known and at most MAX_ABLATIONS, in the registry's order.

    >>> check_ablations(["relu", "no-causal-mask"])
    ('no-causal-mask', 'relu')
    """
    if names is None or names == "":
        return ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise ValueError("The switches must be a list of names, such as ['no-causal-mask'].")
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown:
        raise ValueError(f"Unknown switch {unknown[0][:40]!r}; the switches are: {', '.join(ABLATIONS)}.")
    if len(set(names)) > MAX_ABLATIONS:
        raise ValueError(f"Change at most {MAX_ABLATIONS} things in one run (you picked {len(set(names))}): "
                         f"with more, you cannot tell which one did what.")
    return tuple(name for name in ABLATIONS if name in names)


def check_prediction(prediction) -> str | None:
    """The student's prediction (None when they made none)."""
    if prediction in (None, "", NO_PREDICTION):
        return None
    if prediction not in PREDICTIONS:
        raise ValueError(f"Unknown prediction {str(prediction)[:40]!r}; choose one of: {', '.join(PREDICTIONS)}.")
    return prediction


def explain_ablations(names, already_so: list[str] | None = None) -> str:
    """Markdown: what each picked switch changes, in one sentence each (and which change nothing here)."""
    try:
        names = check_ablations(names)
    except ValueError as error:
        return f"⚠ {error}"
    if not names:
        return ("Pick a switch to run the same model with one thing changed. Then **predict** what it will do "
                "to the validation loss before you press Start: the run tells you whether you were right.")
    lines = [f"- **{ABLATIONS[name].title}**: {ABLATIONS[name].what}" for name in names]
    for name in already_so or []:
        lines.append(f"- *{ABLATIONS[name].title} changes nothing here: this run is already so.*")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# After the run: what happened, beside the prediction
# ---------------------------------------------------------------------------------------------------------------


def measured_effect(val_loss: float | None, baseline_val: float, start_loss: float | None = None) -> str:
    """Which prediction came true: the val loss against the unchanged run's.

    >>> measured_effect(4.49, 4.48), measured_effect(5.1, 4.48), measured_effect(3.2, 4.48)
    ('about the same', 'higher', 'lower')
    >>> measured_effect(float("nan"), 4.48), measured_effect(8.2, 4.48, start_loss=8.3)
    ('breaks', 'breaks')
    """
    if val_loss is None or not math.isfinite(val_loss):
        return "breaks"
    if start_loss is not None and val_loss > start_loss - 0.5:  # it hardly moved from the random model's loss
        return "breaks"
    if abs(val_loss - baseline_val) < SAME_WITHIN:
        return "about the same"
    return "lower" if val_loss < baseline_val else "higher"


def verdict(ablations: tuple[str, ...], prediction: str | None, val_loss: float | None,
            baseline: tuple[str, float] | None, start_loss: float | None = None) -> str:
    """Markdown for the end of a run with switches: predicted, measured, and why.

    ``baseline`` is (which run, its final val loss): the same settings without the switches.
    """
    if not ablations:
        return ""
    titles = ", ".join(ABLATIONS[name].title.lower() for name in ablations)
    shown = "NaN" if val_loss is None or not math.isfinite(val_loss) else f"{val_loss:.3f}"
    lines = [f"**The experiment: {html.escape(titles)}.**"]
    if baseline is None:
        lines.append(f"Val loss **{shown}**. Run the same settings without switches to compare (both runs then "
                     f"appear side by side below).")
    else:
        label, base_val = baseline
        effect = measured_effect(val_loss, base_val, start_loss)
        change = "" if shown == "NaN" else f" ({val_loss - base_val:+.3f})"
        lines.append(f"Val loss **{shown}** against **{base_val:.3f}** for {html.escape(label)}{change}: "
                     f"**{effect}**.")
        if prediction is not None:
            mark = "✓ as you predicted" if prediction == effect else f"✗ you predicted *{prediction}*"
            lines.append(mark + ".")
    lines += [f"*Why ({ABLATIONS[name].title.lower()}):* {ABLATIONS[name].why}" for name in ablations]
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# A run as plain values: its settings, its curve, its results
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One of this page's pretraining runs, as the comparison needs it: its settings in words and its curve."""

    job_id: str
    number: int  # 1, 2, 3 ... in the order this page started them
    ablations: tuple[str, ...]
    settings: dict[str, str]  # setting -> value in words, for the table
    curve: RunCurve = None  # the losses so far (made from the label when the record is)
    tokens_per_s: float | None = None
    status: str = "queued"
    since: int = 0  # events folded so far

    def __post_init__(self):
        if self.curve is None:
            self.curve = RunCurve(self.label)

    @property
    def label(self) -> str:
        switches = ", ".join(ABLATIONS[name].title.lower() for name in self.ablations) or "no switches"
        return f"run {self.number} · {switches}"

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def final_val(self) -> float | None:
        return next((val for _, val in reversed(self.curve.evals) if val is not None), None)

    @property
    def first_loss(self) -> float | None:
        return self.curve.train_loss[0] if self.curve.train_loss else None

    def fold(self, view) -> None:
        """Add the step and eval events of a poll (a ui.jobs.JobView from index ``since``)."""
        curve = self.curve
        for event in view.events:
            if isinstance(event, StepEvent):
                curve.steps.append(event.step)
                curve.tokens.append(event.tokens_seen)
                curve.seconds.append(round(event.elapsed_s, 3))
                curve.train_loss.append(event.train_loss)
                self.tokens_per_s = event.tokens_per_s
            elif isinstance(event, EvalEvent):
                curve.evals.append((event.step, event.val_loss))
        self.since, self.status = view.next_since, view.status
        curve.running = self.running

    def results(self) -> dict[str, str]:
        """Final train loss, final val loss, speed and time, in words."""
        val, curve = self.final_val, self.curve
        return {
            "final batch loss": f"{curve.train_loss[-1]:.3f}" if curve.train_loss else "–",
            "final val loss": f"{val:.3f}" if val is not None else "–",
            "tokens/s": f"{self.tokens_per_s:,.0f}" if self.tokens_per_s else "–",
            "time": f"{curve.seconds[-1]:.0f} s" if curve.seconds else "–",
            "status": self.status,
        }
