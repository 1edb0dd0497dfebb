"""Training views: the loss curves (with the learning-rate schedule under them when known), run statistics, samples.

Pure functions: numbers and strings in, a plotly figure or Markdown/HTML out. No gradio, no torch here.

The figure is redrawn about once a second while a run streams in, so it must not jump and must stay small:
- the x axis always spans the whole planned run (0 to ``max_steps``),
- the loss axis goes from 0 (or, on a log scale, just under the lowest loss) up to the highest loss seen,
- long series are thinned to at most ``MAX_POINTS`` points before they are sent to the browser.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

from visualizations.attention import PlainFigure, fast_figure
from visualizations.tokens import CHIP_TEXT, TOKEN_COLORS, token_text

TRAIN_COLOR = "#3182bd"
VAL_COLOR = "#e6550d"
STEP_COLOR = "#9ecae1"
LR_COLOR = "#31a354"
CLEAR = "rgba(0,0,0,0)"  # transparent paper and plot area: the figure sits on the page's light or dark background
GRID = "rgba(128,128,128,0.25)"  # a grid line that shows on both
# Text colours from the page's theme (Gradio's CSS variables, with light-theme fallbacks), at least 4.5:1 on both.
NOTE_COLOR = "var(--lab-note-color, #4b5563)"
SAMPLE_BACKGROUND = "var(--background-fill-secondary, #f7f7f9)"
MAX_POINTS = 400  # per trace: enough for a smooth curve, small enough to send every second

StepLoss = tuple[int, float]  # (step, loss of that step's batch)
EvalLoss = tuple[int, "float | None", "float | None"]  # (step, train loss, val loss) on fixed batches

LOSS_DOMAIN = (0.34, 1.0)  # the loss plot takes the top two thirds of the figure ...
LR_DOMAIN = (0.0, 0.2)  # ... and the learning-rate schedule a strip at the bottom


def thin(points: Sequence, max_points: int = MAX_POINTS) -> list:
    """Keep at most ``max_points`` evenly spaced items, always including the first and the last.

    >>> thin(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    n = len(points)
    if n <= max_points:
        return list(points)
    picks = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [points[i] for i in picks]


def perplexity(loss: float) -> float:
    """exp(loss): the model is as unsure as if it picked among this many tokens.

    >>> round(perplexity(math.log(50)), 6)
    50.0
    """
    return math.exp(min(loss, 700.0))


def loss_range(losses: Sequence[float], log_scale: bool) -> list[float]:
    """The loss axis: [0, highest * 1.05], or on a log scale (log10 units) from just under the lowest.

    >>> loss_range([8.0, 4.0], log_scale=False)
    [0.0, 8.4]
    """
    finite = [v for v in losses if v is not None and math.isfinite(v) and v > 0]
    top = max(finite, default=10.0) * 1.05
    if not log_scale:
        return [0.0, round(top, 6)]
    bottom = min(finite, default=1.0) * 0.9
    return [math.log10(bottom), math.log10(top)]


def _loss_trace(points: Sequence[tuple[int, float]], name: str, color: str, width: float,
                markers: bool = False) -> dict:
    points = thin(points)
    steps = [step for step, _ in points]
    losses = [round(loss, 4) for _, loss in points]
    return {
        "type": "scatter", "x": steps, "y": losses, "name": name, "mode": "lines+markers" if markers else "lines",
        "line": {"color": color, "width": width}, "marker": {"size": 6},
        "customdata": [round(perplexity(loss), 1) for loss in losses],
        "hovertemplate": f"{name}<br>step %{{x}}: loss %{{y:.3f}}<br>perplexity %{{customdata:,.1f}}<extra></extra>",
        "xaxis": "x", "yaxis": "y",
    }


def _lr_traces(schedule: Sequence[float], current_step: int) -> list[dict]:
    """The whole planned schedule as a line (step 1 .. max_steps) and a dot at the current step."""
    points = thin(list(enumerate(schedule, start=1)))
    traces = [{
        "type": "scatter", "x": [step for step, _ in points], "y": [lr for _, lr in points],
        "name": "learning rate", "mode": "lines", "line": {"color": LR_COLOR, "width": 2},
        "hovertemplate": "step %{x}: lr %{y:.2e}<extra></extra>", "xaxis": "x2", "yaxis": "y2", "showlegend": False,
    }]
    if 1 <= current_step <= len(schedule):
        traces.append({
            "type": "scatter", "x": [current_step], "y": [schedule[current_step - 1]], "name": "now",
            "mode": "markers", "marker": {"color": LR_COLOR, "size": 10, "line": {"color": "white", "width": 1.5}},
            "hovertemplate": "now: step %{x}, lr %{y:.2e}<extra></extra>", "xaxis": "x2", "yaxis": "y2",
            "showlegend": False,
        })
    return traces


def training_figure(step_losses: Sequence[StepLoss], evals: Sequence[EvalLoss], max_steps: int,
                    schedule: Sequence[float] = (), current_step: int = 0, log_scale: bool = False,
                    title: str = "loss while training (lower is better)") -> PlainFigure:
    """Loss curves: the batch loss of every step, and train / validation loss on fixed batches (markers).

    Pretraining and both fine-tuning tabs draw it. The x axis spans the whole planned run (0 .. ``max_steps``).
    With ``schedule``, the planned learning rate of every step (``gpt_core.train.lr_schedule(config)``), a strip
    under the losses shows the whole schedule from the start, with a dot at ``current_step``. Hovering a loss
    shows its perplexity, exp(loss).

    >>> figure = training_figure([(1, 0.9), (2, 0.7)], [(2, 0.8, None)], max_steps=10)
    >>> [trace.name for trace in figure.data], list(figure.layout.xaxis.range), list(figure.layout.yaxis.range)
    (['batch loss', 'train loss'], [0, 10], [0.0, 0.945])
    """
    val_points = [(step, val) for step, _, val in evals if val is not None]
    train_points = [(step, train) for step, train, _ in evals if train is not None]
    traces = []
    if step_losses:
        traces.append(_loss_trace(step_losses, "batch loss", STEP_COLOR, 1))
    if train_points:
        traces.append(_loss_trace(train_points, "train loss", TRAIN_COLOR, 2, markers=True))
    if val_points:
        traces.append(_loss_trace(val_points, "validation loss", VAL_COLOR, 2, markers=True))
    if schedule:
        traces += _lr_traces(schedule, current_step)
    losses = [loss for _, loss in step_losses] + [loss for _, loss in train_points + val_points]
    x_range = [0, max(max_steps, 1)]
    grid = {"showgrid": True, "gridcolor": GRID, "zeroline": False}
    step_axis = {"domain": [0, 1], "range": x_range, "title": {"text": "optimizer step"}, **grid}
    layout = {
        "height": 460 if schedule else 320,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "paper_bgcolor": CLEAR,
        "plot_bgcolor": CLEAR,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "right", "x": 1.0},
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "uirevision": title,  # keep the user's zoom between updates
        "xaxis": {**step_axis, "anchor": "y"},
        "yaxis": {"domain": list(LOSS_DOMAIN) if schedule else [0, 1], "range": loss_range(losses, log_scale),
                  "type": "log" if log_scale else "linear", "title": {"text": "cross-entropy (nats)"}, **grid},
    }
    if schedule:  # the loss plot shares its step axis with the schedule strip under it
        peak_lr = max(schedule)
        layout["xaxis"].update(title=None, showticklabels=False, matches="x2")
        layout["xaxis2"] = {**step_axis, "anchor": "y2"}
        layout["yaxis2"] = {"domain": list(LR_DOMAIN), "range": [0, peak_lr * 1.15],
                            "title": {"text": "learning rate"}, "tickvals": [0, peak_lr],
                            "ticktext": ["0", f"{peak_lr:.3g}"], **grid}
    # Built from plain dicts without plotly's checks: a run's page redraws this every second, and the checks
    # cost ten times the drawing (they held the interpreter lock the training thread needs).
    return fast_figure(traces, layout)


def _duration(seconds: float | None) -> str:
    """65 -> '1 min 05 s'; 7 -> '7 s'; None -> '…'.

    >>> _duration(65), _duration(7.2), _duration(None)
    ('1 min 05 s', '7 s', '…')
    """
    if seconds is None or not math.isfinite(seconds):
        return "…"
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def stats_markdown(tokens_per_s: float | None, mfu: float | None, eta_s: float | None, tokens_seen: int,
                   device: str | None, peak: str = "the GPU's peak FLOP/s") -> str:
    """One line of run statistics: speed, model FLOPs utilisation, time left, tokens seen.

    ``peak`` names what the MFU is a share of (a CPU's is measured: "this CPU's measured matmul peak").

    >>> stats_markdown(12000, 0.25, 30, 48000, "CPU, 1 thread", peak="this CPU's measured matmul peak").split(" · ")
    ['**12,000 tokens/s**', "MFU **25.0%** (share of this CPU's measured matmul peak spent on the model)", \
'about **30 s** left', '48,000 tokens seen']
    >>> stats_markdown(12000, None, 30, 48000, "Apple GPU (MPS)").split(" · ")[1]
    'MFU n/a on Apple GPU (MPS) (no known peak FLOP/s)'
    """
    speed = f"**{tokens_per_s:,.0f} tokens/s**" if tokens_per_s else "tokens/s …"
    if mfu is not None:
        use = f"MFU **{mfu:.1%}** (share of {peak} spent on the model)"
    else:
        use = f"MFU n/a on {device or 'this device'} (no known peak FLOP/s)"
    return f"{speed} · {use} · about **{_duration(eta_s)}** left · {tokens_seen:,} tokens seen"


def compact_line_breaks(escaped_text: str) -> str:
    r"""Runs of 3 or more line breaks -> one grey marker line that counts them.

    An early model often predicts a line break again and again ("ROMEO:\n\n\n\n..."): drawn as is, that is a
    tall empty box. The marker keeps what the model did visible.
    >>> compact_line_breaks("ROMEO:\n\n\n\nBut")
    "ROMEO:\n<span style='color:var(--lab-note-color, #4b5563)'>⏎ × 4</span>\nBut"
    """
    return re.sub(r"\n{3,}", lambda run: f"\n<span style='color:{NOTE_COLOR}'>⏎ × {len(run.group())}</span>\n",
                  escaped_text)


def samples_html(samples: Sequence[tuple[int, str]], prompt: str, last: int = 4) -> str:
    """The latest ``last`` samples, newest first, each with its step; the prompt is shown in bold.

    >>> "step 20" in samples_html([(10, "Hi there"), (20, "Hi you")], "Hi")
    True
    """
    if not samples:
        return "<div class='lab-note'>Samples appear here while the model trains.</div>"
    rows = []
    for step, text in reversed(samples[-last:]):
        rest = text[len(prompt):] if text.startswith(prompt) else text
        body = f"<b>{html.escape(prompt if text.startswith(prompt) else '')}</b>{compact_line_breaks(html.escape(rest))}"
        rows.append(
            f"<div style='margin-bottom:8px'><div style='color:{NOTE_COLOR};font-size:var(--text-sm, 12px)'>"
            f"step {step}</div>"
            f"<div style='font-family:ui-monospace,monospace;white-space:pre-wrap;background:{SAMPLE_BACKGROUND};"
            f"color:var(--body-text-color, #1f2937);font-size:var(--text-md, 14px);"
            f"border-radius:6px;padding:6px 8px;max-height:14em;overflow-y:auto'>{body}</div></div>"
        )
    return "".join(rows)


def batch_html(windows: Sequence[Sequence[tuple[int, bytes]]], batch_size: int, context_length: int) -> str:
    """The first windows of a training batch as text: each token a chip, neighbours in different colours,
    spaces as · and line breaks as ↵ (then a real break), the id in the tooltip.

    ``windows``: (id, bytes) of every token of each window shown; the caption counts the whole batch.

    >>> page = batch_html([[(72, b"Hi"), (13, b"\\n")]], batch_size=16, context_length=2)
    >>> "window 1 of 16" in page and ">Hi</span>" in page and "↵" in page
    True
    """
    blocks = []
    for number, tokens in enumerate(windows, start=1):
        chips = "".join(
            f'<span class="tok" style="background:{TOKEN_COLORS[position % len(TOKEN_COLORS)]};color:{CHIP_TEXT}" '
            f'title="id {token_id}">{html.escape(token_text(token))}</span>'
            for position, (token_id, token) in enumerate(tokens))
        blocks.append(f"<div class='lab-note'>window {number} of {batch_size} · {context_length} tokens</div>"
                      f"<div class='lab-tokens' style='margin-bottom:10px'>{chips}</div>")
    return "".join(blocks)
