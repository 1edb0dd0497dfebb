"""The logit lens table and the knock-out bars of the Inside GPT tab.

`lens_figure`: one heatmap, rows = layers (the embeddings at the top, the model's output at the bottom),
columns = positions of the text. Each cell writes that layer's most likely next token and is coloured by its
probability; bold marks a guess that is the text's real next token; the hover lists the top 5. The cells keep
a readable width (about 65 px for 16 columns: 7 characters), so the caller passes a window of positions, not all 64.

`knockout_figure`: the intact model's 10 most likely next tokens, a bar for the intact probability and one
for the knocked-out model beside it, with the change written after it.

Plain dicts wrapped by `fast_figure`, as the other figures of the tab.
"""

from __future__ import annotations

import html

import numpy as np

from visualizations.attention import FONT_FAMILY, PlainFigure, colorscale, fast_figure, rounded, visible_token

LENS_COLORS = "Blues"  # a probability, 0 to 1: white (unsure) to dark blue (sure)
CELL_CHARS = 7  # a cell writes at most this many characters of its token (the hover has it whole)
CELL_FONT = 13
INTACT_COLOR = "#4292c6"  # the intact model's bars (the blue of the tab's other bars)
KNOCKED_COLOR = "#e6550d"  # the knocked-out model's bars (the Generate tab's orange)


def layer_names(n_rows: int) -> list[str]:
    """Row names of a logit lens with n_rows = n_layers + 1 rows.

    Layers are counted from 0, as the tab's attention grid and knock-out sliders count them.

    >>> layer_names(3)
    ['embeddings', 'after layer 0', 'after layer 1 (output)']
    """
    names = ["embeddings"] + [f"after layer {layer}" for layer in range(n_rows - 1)]
    names[-1] += " (output)" if n_rows > 1 else ""
    return names


def cut(token: str, max_chars: int = CELL_CHARS) -> str:
    """A token as a cell writes it: whitespace visible, at most max_chars characters.

    >>> cut(" extraordinary"), cut("\\n")
    ('·extra…', '↵')
    """
    token = visible_token(token)
    return token if len(token) <= max_chars else token[:max_chars - 1] + "…"


def percent(prob: float) -> str:
    """A probability as a short percentage: two decimals under 1%.

    >>> percent(0.4567), percent(0.0042)
    ('45.7%', '0.42%')
    """
    return f"{prob:.1%}" if prob >= 0.01 else f"{prob:.2%}"


def lens_figure(top_tokens: list[list[list[str]]], top_probs: np.ndarray, input_tokens: list[str],
                first_position: int = 0, next_tokens: list[str | None] | None = None,
                title: str = "") -> PlainFigure:
    """The logit lens of some positions of a text.

    top_tokens: (rows, columns, k) token texts, most likely first; top_probs: (rows, columns, k);
    rows = the embeddings then each block; columns = positions first_position, first_position + 1, ...
    input_tokens: the text's token at each of those positions; next_tokens: the token that really follows
    each one (None after the last token of the text).
    """
    top_probs = np.asarray(top_probs, dtype=np.float64)
    n_rows, n_cols, top_k = top_probs.shape
    rows = layer_names(n_rows)
    columns = [f"{first_position + col}:{cut(token)}" for col, token in enumerate(input_tokens)]
    next_tokens = next_tokens or [None] * n_cols
    cell_text, hover = [], []
    for row in range(n_rows):
        texts, hovers = [], []
        for col in range(n_cols):
            guess = top_tokens[row][col][0]
            hit = next_tokens[col] is not None and guess == next_tokens[col]
            written = html.escape(cut(guess), quote=False)
            texts.append(f"<b>{written}</b>" if hit else written)
            lines = [f"{rows[row]} · position {first_position + col} "
                     f"'{html.escape(visible_token(input_tokens[col]), quote=False)}'"]
            if next_tokens[col] is not None:
                lines.append(f"next in the text: '{html.escape(visible_token(next_tokens[col]), quote=False)}'")
            lines += [f"{rank + 1}. '{html.escape(visible_token(top_tokens[row][col][rank]), quote=False)}' "
                      f"{percent(top_probs[row, col, rank])}" for rank in range(top_k)]
            hovers.append("<br>".join(lines))
        cell_text.append(texts)
        hover.append(hovers)
    heatmap = {
        "type": "heatmap",
        "z": rounded(top_probs[:, :, 0]),
        "x": columns,
        "y": rows,
        "text": cell_text,
        "texttemplate": "%{text}",
        "textfont": {"size": CELL_FONT, "family": FONT_FAMILY},
        "customdata": hover,
        "hovertemplate": "%{customdata}<extra></extra>",
        "colorscale": colorscale(LENS_COLORS),
        "zmin": 0,
        "zmax": 1,
        "xgap": 1,
        "ygap": 1,
        "colorbar": {"title": {"text": "top-1 probability", "side": "right"}, "tickformat": ".0%",
                     "thickness": 14, "len": min(1.0, 300 / (28 * n_rows + 40))},
    }
    row_height = max(22, min(40, 900 // n_rows))  # 5 rows: 40 px each; GPT-2 xl's 49: 22 px
    layout = {
        # the title at the very top: the token labels above the cells (rotated, larger on a projector) grow
        # the top margin downwards and never reach it
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "yref": "container", "y": 1, "yanchor": "top",
                  "pad": {"t": 12}},
        "xaxis": {"type": "category", "side": "top", "tickangle": -40 if n_cols > 10 else 0, "showgrid": False,
                  "automargin": True, "tickfont": {"size": 12}},
        "yaxis": {"type": "category", "autorange": "reversed", "showgrid": False, "automargin": True,
                  "tickfont": {"size": 12}},
        "height": 150 + row_height * n_rows,
        "margin": {"l": 10, "r": 10, "t": 110, "b": 10},
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hoverlabel": {"align": "left"},
    }
    return fast_figure([heatmap], layout)


def change_text(before: float, after: float) -> str:
    """The change of a probability in percentage points.

    >>> change_text(0.30, 0.18), change_text(0.01, 0.0105)
    ('−12.0 pts', '+0.05 pts')
    """
    points = 100 * (after - before)
    sign = "+" if points >= 0 else "−"
    return f"{sign}{abs(points):.1f} pts" if abs(points) >= 1 else f"{sign}{abs(points):.2f} pts"


def knockout_figure(tokens: list[str], before: np.ndarray, after: np.ndarray | None = None,
                    title: str = "") -> PlainFigure:
    """Bars of the intact model's top tokens (best first): intact probabilities, and knocked-out ones beside
    them with the change. after None: the intact model alone (nothing knocked out)."""
    before = np.asarray(before, dtype=np.float64)
    labels = [f"{rank + 1}. {visible_token(token)}" for rank, token in enumerate(tokens)]
    data = [{
        "type": "bar", "name": "intact model", "x": rounded(before, 5), "y": labels, "orientation": "h",
        "marker": {"color": INTACT_COLOR}, "text": [percent(p) for p in before], "textposition": "outside",
        "cliponaxis": False, "hovertemplate": "%{y}<br>intact: %{x:.2%}<extra></extra>",
    }]
    largest = float(before.max(initial=0.0))
    if after is not None:
        after = np.asarray(after, dtype=np.float64)
        largest = max(largest, float(after.max(initial=0.0)))
        data.append({
            "type": "bar", "name": "knocked out", "x": rounded(after, 5), "y": labels, "orientation": "h",
            "marker": {"color": KNOCKED_COLOR}, "textposition": "outside", "cliponaxis": False,
            "text": [f"{percent(a)} ({change_text(b, a)})" for b, a in zip(before, after)],
            "hovertemplate": "%{y}<br>knocked out: %{x:.2%}<extra></extra>",
        })
    layout = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "barmode": "group",
        "bargap": 0.25,
        "xaxis": {"range": [0, 1.45 * largest or 1.0], "tickformat": ".0%",  # room for the text after a bar
                  "title": {"text": "probability of being the next token"}},
        "yaxis": {"autorange": "reversed", "automargin": True, "tickfont": {"size": 13}},
        "height": 140 + (50 if after is not None else 30) * len(labels),
        "margin": {"l": 10, "r": 30, "t": 80, "b": 10},
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom",
                   "traceorder": "normal"},
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    if largest > 0.5:  # the axis goes past 100%: no ticks there (a probability is at most 1)
        layout["xaxis"]["tickvals"] = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    return fast_figure(data, layout)
