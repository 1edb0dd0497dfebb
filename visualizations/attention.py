"""Attention matrices as heatmaps: scores, weights, the causal mask and dropout, with token labels.

A masked cell (a future token the query may not look at) is not the same as a small weight, so it is
drawn by its own grey layer with the hover text "masked", and its value in the main layer is NaN (null).
Cells zeroed by dropout get their own dark layer with the hover text "dropped".

Speed: the figures are written as plain dicts (lists of numbers rounded to what the hover shows) and wrapped
by `fast_figure`, which skips plotly's property-by-property checks. Those checks, and `make_subplots`, cost
20-50 ms a figure, more than the model itself; `grid_layout` gives make_subplots' geometry in a few lines.
The tests check every figure once with plotly's full validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.colors
import plotly.graph_objects as go


def colorscale(name: str) -> list[list]:
    """A named plotly colorscale as the explicit [[position, colour], ...] list plotly.js draws.

    >>> colorscale("Blues")[0]
    [0.0, 'rgb(247,251,255)']
    """
    return [[round(position, 6), color] for position, color in plotly.colors.get_colorscale(name)]


def rounded(values, decimals: int = 3) -> list:
    """An array as nested lists of floats rounded to `decimals`, NaN and infinities as None (null in JSON).

    >>> rounded(np.array([[0.12345, np.nan], [1.0, -np.inf]]))
    [[0.123, None], [1.0, None]]
    """
    array = np.round(np.asarray(values, dtype=np.float64), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    array = array.astype(object)
    array[~np.isfinite(array.astype(np.float64))] = None
    return array.tolist()


def fast_figure(data: list[dict], layout: dict) -> go.Figure:
    """A plotly Figure made from plain dicts without plotly's checks (they cost more than the view itself).

    The figure still gets plotly's default template, so it looks the same as a checked one.
    """
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def axis_suffix(index: int) -> str:
    """Subplot `index` (0-based) draws on axes x, y (index 0), then x2, y2, x3, y3, ...

    >>> axis_suffix(0), axis_suffix(2)
    ('', '3')
    """
    return "" if index == 0 else str(index + 1)


def grid_layout(rows: int, cols: int, titles: list[str], horizontal_spacing: float | None = None,
                vertical_spacing: float | None = None, shared_yaxes: bool = False) -> dict:
    """The axes and subplot titles of `make_subplots(rows, cols, subplot_titles=titles, ...)`, as a layout dict.

    Subplot k (0-based, row by row) uses axes `x{k+1}`/`y{k+1}` ("x"/"y" for the first); its domain is its
    share of the paper minus the spacings; each title sits centred above its subplot.

    >>> grid_layout(1, 2, ["a", "b"], horizontal_spacing=0.1)["xaxis2"]
    {'anchor': 'y2', 'domain': [0.55, 1.0]}
    """
    horizontal_spacing = 0.2 / cols if horizontal_spacing is None else horizontal_spacing
    if vertical_spacing is None:
        vertical_spacing = (0.5 if titles else 0.3) / rows  # make_subplots leaves room for the titles
    width = (1 - horizontal_spacing * (cols - 1)) / cols
    height = (1 - vertical_spacing * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    for index in range(rows * cols):
        row, col = divmod(index, cols)
        suffix = axis_suffix(index)
        left = col * (width + horizontal_spacing)
        top = 1 - row * (height + vertical_spacing)
        x_domain, y_domain = [left, min(left + width, 1.0)], [max(top - height, 0.0), top]
        layout[f"xaxis{suffix}"] = {"anchor": f"y{suffix}", "domain": x_domain}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "domain": y_domain}
        if shared_yaxes and col > 0:
            first_in_row = axis_suffix(row * cols)
            layout[f"yaxis{suffix}"].update(matches=f"y{first_in_row}", showticklabels=False)
        if index < len(titles):
            layout["annotations"].append({
                "font": {"size": 16}, "showarrow": False, "text": titles[index], "x": sum(x_domain) / 2,
                "xanchor": "center", "xref": "paper", "y": top, "yanchor": "bottom", "yref": "paper",
            })
    return layout


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


def _layer(mask: np.ndarray, color: str, name: str, labels: list[str], text: str) -> dict:
    """A one-colour heatmap drawn only where `mask` is True (null elsewhere, so it is transparent)."""
    return {
        "type": "heatmap",
        "z": np.where(mask, 1, None).tolist(),
        "x": labels,
        "y": labels,
        "colorscale": [[0, color], [1, color]],
        "showscale": False,
        "name": name,
        "hovertemplate": f"query %{{y}}<br>key %{{x}}<br>{text}<extra></extra>",
        "text": np.where(mask, "×", "").tolist(),  # a mark on these cells only (a texttemplate would mark every cell)
        "texttemplate": "%{text}" if len(labels) <= 2 * MAX_TEXT_TOKENS else "",
        "textfont": {"color": "#777777" if color == MASKED_COLOR else "#ffffff"},
        "zmin": 0,
        "zmax": 1,
    }


def panel_traces(panel: Panel, labels: list[str]) -> list[dict]:
    """The heatmaps of one panel: the values (masked cells as null), then a 'masked' and a 'dropped' layer."""
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
    traces = [{
        "type": "heatmap",
        "z": rounded(shown),  # 3 decimals: what the hover shows
        "x": labels,
        "y": labels,
        "colorscale": colorscale(colors),
        "zmin": zmin,
        "zmax": zmax,
        "showscale": False,
        "name": panel.title,
        "hovertemplate": f"query %{{y}}<br>key %{{x}}<br>{panel.kind[:-1]} %{{z:.3f}}<extra></extra>",
        "texttemplate": "%{z:.2f}" if show_numbers else "",
        "textfont": {"size": 11},
    }]
    if masked.any():
        traces.append(_layer(masked, MASKED_COLOR, "masked", labels, "masked (future token)"))
    if panel.dropped is not None and np.asarray(panel.dropped).any():
        traces.append(_layer(np.asarray(panel.dropped, dtype=bool), DROPPED_COLOR, "dropped", labels, "dropped"))
    return traces


def panels_figure(panels: list[Panel], tokens: list[str], title: str = "", columns: int | None = None) -> go.Figure:
    """Panels in a grid (scores | weights, or one row per head); in each, rows = queries, columns = keys."""
    labels = token_labels(tokens)
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    layout = grid_layout(rows, columns, [p.title for p in panels],
                         horizontal_spacing=0.1 if len(tokens) > 8 else 0.06,
                         vertical_spacing=0.3 / rows if rows > 1 else 0.0)
    data = []
    for index, panel in enumerate(panels):
        suffix = axis_suffix(index)
        for trace in panel_traces(panel, labels):
            data.append({**trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
        # Square cells: each panel's y axis keeps the scale of its own x axis.
        layout[f"yaxis{suffix}"].update(autorange="reversed", tickfont={"size": 11}, constrain="domain",
                                        scaleanchor=f"x{suffix}")
        layout[f"xaxis{suffix}"].update(tickangle=-45, tickfont={"size": 11}, constrain="domain")
    label_room = 7 * max((len(label) for label in labels), default=4)  # the tick labels take this much
    panel_side = min(560, max(300, 26 * len(tokens)))
    layout.update(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=rows * (panel_side + label_room + 40) + 40,
        margin={"l": 10, "r": 10, "t": 70 if title else 40, "b": 10},
        plot_bgcolor="white",
        showlegend=False,
    )
    return fast_figure(data, layout)


def head_figure(weights: np.ndarray, tokens: list[str], title: str, causal: bool = True) -> go.Figure:
    """One attention head enlarged: weights (T, T), future cells drawn as masked when `causal`."""
    weights = np.asarray(weights, dtype=np.float64)
    masked = np.triu(np.ones_like(weights, dtype=bool), k=1) if causal else None
    return panels_figure([Panel(title, weights, "weights", masked=masked)], tokens)
