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

import plotly.graph_objects as go

TRAIN_COLOR = "#3182bd"
VAL_COLOR = "#e6550d"
STEP_COLOR = "#9ecae1"
LR_COLOR = "#31a354"
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
                markers: bool = False) -> go.Scatter:
    points = thin(points)
    steps = [step for step, _ in points]
    losses = [round(loss, 4) for _, loss in points]
    return go.Scatter(
        x=steps, y=losses, name=name, mode="lines+markers" if markers else "lines",
        line={"color": color, "width": width}, marker={"size": 6},
        customdata=[round(perplexity(loss), 1) for loss in losses],
        hovertemplate=f"{name}<br>step %{{x}}: loss %{{y:.3f}}<br>perplexity %{{customdata:,.1f}}<extra></extra>",
        xaxis="x", yaxis="y",
    )


def _lr_traces(schedule: Sequence[float], current_step: int) -> list[go.Scatter]:
    """The whole planned schedule as a line (step 1 .. max_steps) and a dot at the current step."""
    points = thin(list(enumerate(schedule, start=1)))
    traces = [go.Scatter(
        x=[step for step, _ in points], y=[lr for _, lr in points], name="learning rate", mode="lines",
        line={"color": LR_COLOR, "width": 2}, hovertemplate="step %{x}: lr %{y:.2e}<extra></extra>",
        xaxis="x2", yaxis="y2", showlegend=False,
    )]
    if 1 <= current_step <= len(schedule):
        traces.append(go.Scatter(
            x=[current_step], y=[schedule[current_step - 1]], name="now", mode="markers",
            marker={"color": LR_COLOR, "size": 10, "line": {"color": "white", "width": 1.5}},
            hovertemplate="now: step %{x}, lr %{y:.2e}<extra></extra>", xaxis="x2", yaxis="y2", showlegend=False,
        ))
    return traces


def training_figure(step_losses: Sequence[StepLoss], evals: Sequence[EvalLoss], max_steps: int,
                    schedule: Sequence[float] = (), current_step: int = 0, log_scale: bool = False,
                    title: str = "loss while training (lower is better)") -> go.Figure:
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
    step_axis = {"domain": [0, 1], "range": x_range, "title": {"text": "optimizer step"}}
    figure = go.Figure(traces)
    figure.update_layout(
        height=460 if schedule else 320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "right", "x": 1.0},
        title={"text": title, "font": {"size": 14}, "x": 0.01},
        uirevision=title,  # keep the user's zoom between updates
        xaxis={**step_axis, "anchor": "y"},
        yaxis={"domain": list(LOSS_DOMAIN) if schedule else [0, 1], "range": loss_range(losses, log_scale),
               "type": "log" if log_scale else "linear", "title": {"text": "cross-entropy (nats)"}},
    )
    if schedule:  # the loss plot shares its step axis with the schedule strip under it
        peak_lr = max(schedule)
        figure.update_layout(
            xaxis={"title": None, "showticklabels": False, "matches": "x2"},
            xaxis2={**step_axis, "anchor": "y2"},
            yaxis2={"domain": list(LR_DOMAIN), "range": [0, peak_lr * 1.15], "title": {"text": "learning rate"},
                    "tickvals": [0, peak_lr], "ticktext": ["0", f"{peak_lr:.3g}"]},
        )
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2") if schedule else ("xaxis", "yaxis"):
        figure.layout[axis].update(showgrid=True, gridcolor="#eee", zeroline=False)
    return figure


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
                   device: str | None) -> str:
    """One line of run statistics: speed, model FLOPs utilisation, time left, tokens seen.

    >>> stats_markdown(12000, None, 30, 48000, "cpu")
    '**12,000 tokens/s** · MFU n/a on cpu (no known peak FLOP/s) · about **30 s** left · 48,000 tokens seen'
    """
    speed = f"**{tokens_per_s:,.0f} tokens/s**" if tokens_per_s else "tokens/s …"
    if mfu is not None:
        use = f"MFU **{mfu:.1%}** (share of the GPU's peak FLOP/s spent on the model)"
    else:
        use = f"MFU n/a on {device or 'this device'} (no known peak FLOP/s)"
    return f"{speed} · {use} · about **{_duration(eta_s)}** left · {tokens_seen:,} tokens seen"


def compact_line_breaks(escaped_text: str) -> str:
    r"""Runs of 3 or more line breaks -> one grey marker line that counts them.

    An early model often predicts a line break again and again ("ROMEO:\n\n\n\n..."): drawn as is, that is a
    tall empty box. The marker keeps what the model did visible.
    >>> compact_line_breaks("ROMEO:\n\n\n\nBut")
    "ROMEO:\n<span style='color:#888'>⏎ × 4</span>\nBut"
    """
    return re.sub(r"\n{3,}", lambda run: f"\n<span style='color:#888'>⏎ × {len(run.group())}</span>\n", escaped_text)


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
            f"<div style='margin-bottom:8px'><div style='color:#666;font-size:0.85rem'>step {step}</div>"
            f"<div style='font-family:ui-monospace,monospace;white-space:pre-wrap;background:#f7f7f9;"
            f"border-radius:6px;padding:6px 8px;max-height:14em;overflow-y:auto'>{body}</div></div>"
        )
    return "".join(rows)
