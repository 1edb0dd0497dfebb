"""Attention matrices as heatmaps: scores, weights, the causal mask and dropout, with token labels.

A masked cell (a future token the query may not look at) is not the same as a small weight, so it is
drawn by its own grey layer with the hover text "masked", and its value in the main layer is NaN.
Cells zeroed by dropout get their own dark layer with the hover text "dropped".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

WEIGHT_COLORS = "Blues"  # weights live in [0, 1]
SCORE_COLORS = "RdBu_r"  # scores can be negative: blue below zero, red above
MASKED_COLOR = "#c8c8c8"
DROPPED_COLOR = "#333333"
MAX_TEXT_TOKENS = 10  # write the numbers inside cells only while they stay readable


@dataclass
class Panel:
    """One matrix to draw: `values` is (T, T) with rows = queries and columns = keys."""

    title: str
    values: np.ndarray
    kind: str = "weights"  # "weights" (0..1) or "scores" (any sign)
    masked: np.ndarray | None = None  # True where the causal mask hides the key
    dropped: np.ndarray | None = None  # True where dropout zeroed the weight


def token_labels(tokens: list[str]) -> list[str]:
    """Unique, visible axis labels: plotly merges equal category names, so repeated tokens get their position.

    >>> token_labels(["the", " cat", " the"])
    ['0:the', '1:␣cat', '2:␣the']
    """
    return [f"{i}:{_visible(tok)}" for i, tok in enumerate(tokens)]


def _visible(token: str) -> str:
    """Show leading spaces and newlines so ' the' and 'the' look different on an axis."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def masked_cells(values: np.ndarray) -> np.ndarray:
    """Cells hidden by a mask: -inf scores or NaN values.

    >>> masked_cells(np.array([[1.0, -np.inf], [0.5, 0.5]])).tolist()
    [[False, True], [False, False]]
    """
    return ~np.isfinite(values)


def _layer(mask: np.ndarray, color: str, name: str, labels: list[str], text: str) -> go.Heatmap:
    """A one-colour heatmap drawn only where `mask` is True (NaN elsewhere, so it is transparent)."""
    z = np.where(mask, 1.0, np.nan)
    return go.Heatmap(
        z=z,
        x=labels,
        y=labels,
        colorscale=[[0, color], [1, color]],
        showscale=False,
        name=name,
        hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{text}<extra></extra>",
        text=np.where(mask, "×", ""),  # a mark on these cells only (a texttemplate would mark every cell)
        texttemplate="%{text}" if len(labels) <= 2 * MAX_TEXT_TOKENS else "",
        textfont={"color": "#777777" if color == MASKED_COLOR else "#ffffff"},
        zmin=0,
        zmax=1,
    )


def panel_traces(panel: Panel, labels: list[str]) -> list[go.Heatmap]:
    """The traces of one panel: the values (masked cells as NaN), then a 'masked' and a 'dropped' layer."""
    values = np.asarray(panel.values, dtype=np.float64)
    masked = masked_cells(values) if panel.masked is None else np.asarray(panel.masked, dtype=bool)
    shown = np.where(masked, np.nan, values)
    finite = shown[np.isfinite(shown)]
    if panel.kind == "scores":
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        zmin, zmax, colors = -bound, bound, SCORE_COLORS
    else:
        zmin, zmax, colors = 0.0, max(1.0, float(finite.max()) if finite.size else 1.0), WEIGHT_COLORS
    show_numbers = len(labels) <= MAX_TEXT_TOKENS
    traces = [
        go.Heatmap(
            z=shown,
            x=labels,
            y=labels,
            colorscale=colors,
            zmin=zmin,
            zmax=zmax,
            showscale=False,
            name=panel.title,
            hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{panel.kind[:-1]} %{{z:.3f}}<extra></extra>",
            texttemplate="%{z:.2f}" if show_numbers else "",
            textfont={"size": 11},
        )
    ]
    if masked.any():
        traces.append(_layer(masked, MASKED_COLOR, "masked", labels, "masked (future token)"))
    if panel.dropped is not None and np.asarray(panel.dropped).any():
        traces.append(_layer(np.asarray(panel.dropped, dtype=bool), DROPPED_COLOR, "dropped", labels, "dropped"))
    return traces


def panels_figure(panels: list[Panel], tokens: list[str], title: str = "", columns: int | None = None) -> go.Figure:
    """Panels in a grid (scores | weights, or one row per head); in each, rows = queries, columns = keys."""
    labels = token_labels(tokens)
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=[p.title for p in panels],
        horizontal_spacing=0.1 if len(tokens) > 8 else 0.06, vertical_spacing=0.3 / rows if rows > 1 else 0.0,
    )
    for index, panel in enumerate(panels):
        row, col = divmod(index, columns)
        for trace in panel_traces(panel, labels):
            figure.add_trace(trace, row=row + 1, col=col + 1)
        axis = index + 1
        # Square cells: each panel's y axis keeps the scale of its own x axis.
        figure.update_yaxes(autorange="reversed", tickfont={"size": 11}, constrain="domain",
                            scaleanchor=f"x{'' if axis == 1 else axis}",
                            row=row + 1, col=col + 1)
        figure.update_xaxes(tickangle=-45, tickfont={"size": 11}, constrain="domain", row=row + 1, col=col + 1)
    label_room = 7 * max((len(label) for label in labels), default=4)  # the tick labels take this much
    panel_side = min(560, max(300, 26 * len(tokens)))
    figure.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=rows * (panel_side + label_room + 40) + 40,
        margin={"l": 10, "r": 10, "t": 70 if title else 40, "b": 10},
        plot_bgcolor="white",
        showlegend=False,
    )
    return figure


def head_figure(weights: np.ndarray, tokens: list[str], title: str, causal: bool = True) -> go.Figure:
    """One attention head enlarged: weights (T, T), future cells drawn as masked when `causal`."""
    weights = np.asarray(weights, dtype=np.float64)
    masked = np.triu(np.ones_like(weights, dtype=bool), k=1) if causal else None
    return panels_figure([Panel(title, weights, "weights", masked=masked)], tokens)
