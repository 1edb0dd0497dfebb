"""Runs side by side: every run's loss curves on one plot, a table of what differs, and the numbers as CSV.

Pure functions: plain lists and strings in (a ``RunCurve`` per run), a plotly figure, HTML or CSV text out.
No gradio, no torch here.

The figure is redrawn while runs stream in, so it keeps still: a fixed height and margins, the legend at the
top, the loss axis from 0 (or just under the lowest loss on a log scale) to the highest loss seen, long series
thinned to ``MAX_POINTS`` like ``training_figure``'s. It is written as plain dicts (``fast_figure``): ten runs of
a thousand steps each are drawn in a few milliseconds.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from visualizations.attention import PlainFigure, fast_figure
from visualizations.training import CLEAR, GRID, loss_range, perplexity, thin

# One colour per run: the Okabe-Ito palette (told apart with every common colour-vision deficiency), each
# colour moved to a middle lightness so a line shows at 3:1 or more on white and on the dark theme's
# backgrounds (#0b0f19, #1f2937). Okabe-Ito's yellow and sky blue are too light on white and its black is
# invisible in the dark theme: they became olive and grey, and sky blue was left out (it came out as blue).
# Dark orange and olive are the closest pair, so olive comes last.
RUN_COLORS = ("#0089D6", "#D55E00", "#009E73", "#C36097", "#AD7800", "#828282", "#8E850B")
# ... and one marker shape per run for its validation points, so runs differ by more than colour.
RUN_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "triangle-down", "cross")

# The x axis a student picks -> the RunCurve field it reads.
X_AXES = {"step": "steps", "tokens seen": "tokens", "wall time (s)": "seconds"}
X_TITLES = {"step": "optimizer step", "tokens seen": "training tokens seen", "wall time (s)": "wall time (s)"}
X_FORMATS = {"step": ",d", "tokens seen": ",d", "wall time (s)": ",.1f"}  # d3 formats for the hover text

FIGURE_HEIGHT = 380
MARGIN = {"l": 10, "r": 10, "t": 60, "b": 10}  # room at the top for two rows of legend
LINES_NOTE = "markers: validation loss, thin line: batch loss"  # under the x axis, with its title
MAX_LABEL_CHARS = 60  # a run's label in the legend, the table and the CSV
MAX_VALUE_CHARS = 120  # a setting's name or value, or a result, in the table
EMPTY_MESSAGE = "Start two runs to compare them here"
RUNNING = " (running)"


@dataclass
class RunCurve:
    """One run's losses as plain values: one entry per logged step in ``steps``, ``tokens`` (training tokens
    seen after that step), ``seconds`` (wall time since the run started) and ``train_loss`` (that step's batch
    loss); ``evals`` holds (step, validation loss) pairs. ``running``: the run has not finished yet."""

    label: str
    steps: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    evals: list[tuple[int, float | None]] = field(default_factory=list)
    running: bool = False

    def __post_init__(self):
        sizes = [len(self.steps), len(self.tokens), len(self.seconds), len(self.train_loss)]
        if len(set(sizes)) > 1:
            raise ValueError(f"Run {self.label!r}: steps, tokens, seconds and train_loss need one entry per "
                             f"logged step, got {sizes[0]}, {sizes[1]}, {sizes[2]} and {sizes[3]} entries.")


def short_label(label: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A run's label on one line, cut to ``max_chars`` characters (with an ellipsis).

    >>> short_label("run 2 ·\\nno causal mask"), short_label("x" * 70, 5)
    ('run 2 · no causal mask', 'xxxx…')
    """
    label = " ".join(str(label).split())
    return label if len(label) <= max_chars else label[:max_chars - 1] + "…"


def finite_or_none(value: float | None, decimals: int = 4) -> float | None:
    """A loss rounded for the browser; NaN, infinities and None become None (a gap in the line).

    >>> finite_or_none(2.345678), finite_or_none(float("nan")), finite_or_none(None)
    (2.3457, None, None)
    """
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), decimals)


def x_at_steps(steps: Sequence[int], values: Sequence[float], at: Sequence[int]) -> list[float]:
    """Where steps ``at`` fall on another axis (tokens, seconds), interpolated linearly between the logged steps.

    Step 0 is at 0 (no tokens seen, no time spent) when the run's first logged step is later; a step past the
    last logged one stays at the last value.

    >>> x_at_steps([10, 20], [1000, 2000], [15, 20, 5])
    [1500.0, 2000.0, 500.0]
    """
    known_steps, known_values = list(steps), list(values)
    if not known_steps or known_steps[0] > 0:
        known_steps, known_values = [0, *known_steps], [0, *known_values]
    return [float(x) for x in np.interp(at, known_steps, known_values)]


def _x_values(curve: RunCurve, x_axis: str) -> list:
    return list(getattr(curve, X_AXES[x_axis]))


def _hover(kind: str, x_axis: str) -> str:
    """The hover text: the run, where (the step, and the x value on the tokens and time axes), loss, perplexity.
    ``meta`` holds the run's label, ``text`` the step and ``customdata`` the perplexity of each point."""
    where = "step %{x:,}" if x_axis == "step" else f"step %{{text}} · {x_axis} %{{x:{X_FORMATS[x_axis]}}}"
    return f"%{{meta}}<br>{where}<br>{kind} %{{y:.3f}} (perplexity %{{customdata:,.1f}})<extra></extra>"


def _run_traces(curve: RunCurve, index: int, x_axis: str) -> list[dict]:
    """Two traces per run: its batch loss as a thin line, and its validation loss as markers on a line in the
    same colour (that one carries the legend entry, so the legend shows the run's colour and marker)."""
    color, symbol = RUN_COLORS[index % len(RUN_COLORS)], RUN_SYMBOLS[index % len(RUN_SYMBOLS)]
    label = html.escape(short_label(curve.label))  # plotly reads some HTML in names: show the text as typed
    group = f"run{index}"
    x_values = _x_values(curve, x_axis)
    train = [(x, step, finite_or_none(loss))
             for x, step, loss in thin(list(zip(x_values, curve.steps, curve.train_loss)))]
    evals = [(step, finite_or_none(loss)) for step, loss in curve.evals]
    eval_steps = [step for step, _ in evals]
    if x_axis == "step":
        eval_x = eval_steps
    else:
        eval_x = [round(x, 3) for x in x_at_steps(curve.steps, x_values, eval_steps)]

    def hover_data(steps: list[int], losses: list[float | None]) -> dict:
        """Flat lists (plotly copies nested ones slowly): the step as text, the perplexity as customdata."""
        data = {"customdata": [None if loss is None else round(perplexity(loss), 1) for loss in losses]}
        if x_axis != "step":
            data["text"] = [f"{step:,}" for step in steps]
        return data

    train_losses = [loss for _, _, loss in train]
    val_losses = [loss for _, loss in evals]
    return [
        {"type": "scatter", "mode": "lines", "name": f"{label} · batch loss", "meta": label,
         "x": [x for x, _, _ in train], "y": train_losses,
         **hover_data([step for _, step, _ in train], train_losses),
         "line": {"color": color, "width": 1}, "opacity": 0.55, "legendgroup": group, "showlegend": False,
         "hovertemplate": _hover("batch loss", x_axis)},
        {"type": "scatter", "mode": "lines+markers", "name": label + (RUNNING if curve.running else ""),
         "meta": label, "x": eval_x or [None], "y": val_losses or [None],  # [None]: still in the legend
         **hover_data(eval_steps, val_losses),
         "line": {"color": color, "width": 2.5, "dash": "dot" if curve.running else "solid"},
         "marker": {"color": color, "size": 8, "symbol": symbol}, "legendgroup": group,
         "hovertemplate": _hover("validation loss", x_axis)},
    ]


def compare_figure(curves: Sequence[RunCurve], x_axis: str = "step", log_scale: bool = False) -> PlainFigure:
    """Every run on one plot, each in its own colour: its batch loss as a thin line, its validation loss as
    markers on a thicker line (dotted while the run is still going, and "(running)" in the legend).

    ``x_axis`` is one of ``X_AXES``: optimizer steps, training tokens seen, or wall time. On tokens and time a
    run's validation points sit at the x of their step, interpolated from the run's logged steps.

    >>> run = RunCurve("run 1", [1, 2], [512, 1024], [0.5, 1.0], [8.0, 7.0], [(2, 7.5)], running=True)
    >>> figure = compare_figure([run], x_axis="tokens seen")
    >>> [trace.name for trace in figure.data], list(figure.data[1].x), list(figure.layout.yaxis.range)
    (['run 1 · batch loss', 'run 1 (running)'], [1024.0], [0.0, 8.4])
    """
    if x_axis not in X_AXES:
        raise ValueError(f"The x axis must be one of {', '.join(X_AXES)}; got {x_axis!r}.")
    grid = {"showgrid": True, "gridcolor": GRID, "zeroline": False}
    layout = {
        "height": FIGURE_HEIGHT,
        "margin": dict(MARGIN),
        "paper_bgcolor": CLEAR,
        "plot_bgcolor": CLEAR,
        # No figure title: it would collide with a legend of two rows (and plotly's horizontal legend wraps
        # badly under a legend title). What the two kinds of line are is said under the x axis.
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0},
        "uirevision": f"{x_axis}|{log_scale}",  # keep the user's zoom while runs grow, reset it on a new axis
        "hovermode": "closest",
    }
    if not curves:
        layout["xaxis"] = {"visible": False}
        layout["yaxis"] = {"visible": False}
        layout["annotations"] = [{"text": EMPTY_MESSAGE, "showarrow": False, "xref": "paper", "yref": "paper",
                                  "x": 0.5, "y": 0.5, "font": {"size": 16}}]
        return fast_figure([], layout)
    traces = [trace for index, curve in enumerate(curves) for trace in _run_traces(curve, index, x_axis)]
    losses = [loss for curve in curves for loss in curve.train_loss] + [
        loss for curve in curves for _, loss in curve.evals if loss is not None]
    layout["xaxis"] = {"title": {"text": f"{X_TITLES[x_axis]}   ({LINES_NOTE})"}, "rangemode": "tozero", **grid}
    layout["yaxis"] = {"title": {"text": "cross-entropy (nats)"}, "range": loss_range(losses, log_scale),
                       "type": "log" if log_scale else "linear", **grid}
    return fast_figure(traces, layout)


# ---------------------------------------------------------------------------------------------------------------
# The settings table
# ---------------------------------------------------------------------------------------------------------------

DIFFERS_MARK = "≠"
MISSING = "—"

# Scoped to the table's class; colours from the page's theme variables, so it reads in light, dark and
# projector mode (the app's CSS enlarges every table's text on a projector).
TABLE_CSS = """<style>
.lab-compare { overflow-x: auto; }
.lab-compare table { border-collapse: collapse; font-size: var(--text-md, 14px);
  color: var(--body-text-color, #1f2937); }
.lab-compare th, .lab-compare td { padding: 4px 10px; text-align: left; vertical-align: top;
  border-bottom: 1px solid var(--border-color-primary, #e5e7eb); }
.lab-compare thead th { font-weight: 700; }
.lab-compare tr.differs th, .lab-compare tr.differs td { font-weight: 700;
  background: var(--background-fill-secondary, #f3f4f6); }
.lab-compare tr.differs th { border-left: 4px solid var(--color-accent, #4f46e5); }
.lab-compare tr.results th, .lab-compare tr.results td { font-variant-numeric: tabular-nums; }
.lab-compare tbody.results tr:first-child th, .lab-compare tbody.results tr:first-child td {
  border-top: 2px solid var(--body-text-color, #1f2937); }
.lab-compare .lab-compare-key { font-weight: 400; color: var(--lab-note-color, #4b5563); }
</style>"""


def _ordered_keys(dicts: Sequence[dict[str, str]]) -> list[str]:
    """Every key of the dicts, in the order first seen."""
    return list(dict.fromkeys(key for row in dicts for key in row))


def differing_settings(rows: Sequence[dict[str, str]]) -> list[str]:
    """The settings whose value is not the same in every run (a setting a run lacks counts as different).

    >>> differing_settings([{"lr": "1e-3", "steps": "100"}, {"lr": "1e-3", "steps": "200"}, {"lr": "1e-3"}])
    ['steps']
    """
    return [key for key in _ordered_keys(rows) if len({row.get(key) for row in rows}) > 1]


def settings_table_html(rows: Sequence[dict[str, str]], labels: Sequence[str],
                        results: Sequence[dict[str, str]]) -> str:
    """A table with one column per run: its settings (``rows[i]`` maps setting -> value for run ``labels[i]``),
    then its results (``results[i]``: final losses, speed, time). A setting that differs between runs is marked
    three ways: the row gets the class ``differs`` (bold on a shaded band), and its name starts with "≠".

    >>> page = settings_table_html([{"lr": "1e-3", "heads": "4"}, {"lr": "3e-3", "heads": "4"}], ["a", "b"],
    ...                            [{"val loss": "4.1"}, {"val loss": "3.9"}])
    >>> re.findall(r'<tr class="differs"><th scope="row">([^<]*)<', page), "<td>3.9</td>" in page
    (['≠ lr'], True)
    """
    if not len(rows) == len(labels) == len(results):
        raise ValueError(f"One settings dict, label and results dict per run: got {len(rows)} settings, "
                         f"{len(labels)} labels and {len(results)} results.")
    if not labels:
        return f"<div class='lab-note'>{EMPTY_MESSAGE}.</div>"
    differs = set(differing_settings(rows)) if len(rows) > 1 else set()

    def cells(values: dict[str, str], key: str) -> str:
        return f"<td>{html.escape(short_label(values.get(key, MISSING), MAX_VALUE_CHARS))}</td>"

    head = "".join(f'<th scope="col">{html.escape(short_label(label))}</th>' for label in labels)
    setting_rows = []
    for key in _ordered_keys(rows):
        name = html.escape(short_label(key, MAX_VALUE_CHARS))
        if key in differs:
            row_head = f'<tr class="differs"><th scope="row">{DIFFERS_MARK} {name}</th>'
        else:
            row_head = f'<tr><th scope="row" class="lab-compare-key">{name}</th>'
        setting_rows.append(row_head + "".join(cells(row, key) for row in rows) + "</tr>")
    result_rows = [f'<tr class="results"><th scope="row">{html.escape(short_label(key, MAX_VALUE_CHARS))}</th>'
                   + "".join(cells(result, key) for result in results) + "</tr>"
                   for key in _ordered_keys(results)]
    caption = (f"{DIFFERS_MARK} and bold: a setting that differs between runs" if differs
               else "every run has the same settings")
    return (f"{TABLE_CSS}<div class='lab-compare'><table><caption class='lab-note'>{caption}</caption>"
            f'<thead><tr><th scope="col">setting</th>{head}</tr></thead>'
            f"<tbody>{''.join(setting_rows)}</tbody><tbody class='results'>{''.join(result_rows)}</tbody>"
            "</table></div>")


# ---------------------------------------------------------------------------------------------------------------
# CSV and file names
# ---------------------------------------------------------------------------------------------------------------

CSV_HEADER = ("run", "step", "tokens_seen", "seconds", "train_loss", "val_loss")


def _csv_text(value: str) -> str:
    """A label made safe for a spreadsheet: one that starts like a formula (=, +, -, @) gets a leading '.

    >>> _csv_text("=HYPERLINK(1)"), _csv_text("run 1")
    ("'=HYPERLINK(1)", 'run 1')
    """
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _number(value: float | None, decimals: int) -> str:
    """A number for the CSV, rounded; empty when it is missing or not finite.

    >>> _number(0.1234567, 3), _number(float("nan"), 3), _number(None, 3)
    ('0.123', '', '')
    """
    return "" if value is None or not math.isfinite(value) else str(round(float(value), decimals))


def runs_csv(curves: Sequence[RunCurve]) -> str:
    """Every logged step of every run, one line each (long format, ready for a spreadsheet or pandas):
    run,step,tokens_seen,seconds,train_loss,val_loss. ``val_loss`` is filled on the steps that were evaluated
    (empty elsewhere), as is anything that was not a finite number.

    >>> print(runs_csv([RunCurve("a", [1, 2], [64, 128], [0.25, 0.5], [8.0, 7.5], [(2, 7.75)])]), end="")
    run,step,tokens_seen,seconds,train_loss,val_loss
    a,1,64,0.25,8.0,
    a,2,128,0.5,7.5,7.75
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for curve in curves:
        label = _csv_text(short_label(curve.label))
        val = {step: loss for step, loss in curve.evals}
        logged = set(curve.steps)
        lines = [(step, str(int(tokens)), _number(seconds, 3), _number(loss, 6), _number(val.get(step), 6))
                 for step, tokens, seconds, loss
                 in zip(curve.steps, curve.tokens, curve.seconds, curve.train_loss)]
        lines += [(step, "", "", "", _number(loss, 6)) for step, loss in curve.evals if step not in logged]
        for step, *rest in sorted(lines, key=lambda line: line[0]):
            writer.writerow([label, step, *rest])
    return out.getvalue()


MAX_STEM_CHARS = 80


def safe_file_stem(*parts: str, max_chars: int = MAX_STEM_CHARS) -> str:
    """A file name (without extension) made of ``parts``: lowercase letters, digits and single hyphens, at most
    ``max_chars`` characters; accents are dropped and anything else becomes a hyphen.

    >>> safe_file_stem("LLM Lab", "pretrain", "nano", "no causal mask!")
    'llm-lab-pretrain-nano-no-causal-mask'
    >>> safe_file_stem("Café <script>", "../../etc"), safe_file_stem("", "???")
    ('cafe-script-etc', 'llm-lab')
    """
    text = unicodedata.normalize("NFKD", "-".join(str(part) for part in parts))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    stem = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    stem = stem[:max_chars].rstrip("-")
    return stem or "llm-lab"
