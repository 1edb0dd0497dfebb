"""Views of the model's insides across training (``gpt_core.snapshots``): head scores over the snapshots, the
2-D map of token embeddings, and the line that names the snapshot shown.

The attention grid, the logit lens and the next-token bars are the Inside GPT tab's own figures
(``visualizations.model.attention_grid_figure``, ``visualizations.lens``), drawn from a snapshot's lists.
Pure functions: numbers and strings in, plain-dict plotly figures (``fast_figure``) or Markdown out. Backgrounds
are transparent and greys are mid-greys, so the figures read on the light and the dark theme and on a projector.
"""

from __future__ import annotations

from collections.abc import Sequence

from visualizations.attention import INK, PlainFigure, axis_suffix, fast_figure, grid_layout, visible_token
from visualizations.training import CLEAR, GRID

POINT_GREY = "#9ca3af"  # the map's unlabelled tokens: a mid-grey, visible on white and on the dark theme
LABEL_COLOR = "#e6550d"  # the tokens a student asked to see (the Generate tab's orange)
CHOSEN_BAND = "rgba(128,128,128,0.18)"  # the snapshot shown, on the score plots
# one colour per head (ColorBrewer Dark2: distinct, readable on both themes); layers differ by their dash
HEAD_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
LAYER_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
MAX_LABELS = 40  # tokens labelled on the map at most
MAX_LABEL_CHARS = 30


def steps_line(steps: Sequence[int], index: int, planned: Sequence[int] = ()) -> str:
    """Markdown: the snapshot shown among all of them, and the planned steps still to come.

    >>> steps_line([0, 10, 30], 1, planned=[0, 10, 30, 100])
    'Step **10** (snapshot 2 of 3) · steps 0 · **10** · 30 · 100 (to come)'
    """
    taken = [f"**{step}**" if i == index else str(step) for i, step in enumerate(steps)]
    to_come = [step for step in planned if step > (steps[-1] if steps else -1)]
    later = [f"{step} (to come)" for step in to_come]
    return f"Step **{steps[index]}** (snapshot {index + 1} of {len(steps)}) · steps {' · '.join(taken + later)}"


def parse_labels(text: str) -> list[str]:
    """The tokens to label on the map, from a text of words separated by spaces (at most ``MAX_LABELS``).

    >>> parse_labels("ROMEO the  .  the")
    ['ROMEO', 'the', '.']
    """
    words = [word[:MAX_LABEL_CHARS] for word in (text or "").split()]
    return list(dict.fromkeys(words))[:MAX_LABELS]


def labelled_points(tokens: Sequence[str], labels: Sequence[str]) -> list[int]:
    """Indices of the tokens a label names: a token matches when it equals the label once its surrounding
    whitespace is stripped (" the" and "the" are both "the").

    >>> labelled_points([" the", "the", " king", "."], ["the", "."])
    [0, 1, 3]
    """
    wanted = set(labels)
    return [i for i, token in enumerate(tokens) if token.strip() in wanted]


def head_scores_figure(steps: Sequence[int], previous_token: Sequence, induction: Sequence, index: int,
                       title: str = "") -> PlainFigure:
    """Two panels, one line per head across the snapshots: its previous-token score and its induction score.

    previous_token, induction: per snapshot, (n_layers, n_heads) scores in [0, 1]. The snapshot shown
    (``index``) is shaded. The x axis lists the snapshot steps evenly spaced (they are log-spaced).
    """
    names = ["previous-token score", "induction score"]
    layout = grid_layout(1, 2, names, horizontal_spacing=0.08)
    x = [str(step) for step in steps]
    data = []
    for panel, scores in enumerate((previous_token, induction)):
        suffix = axis_suffix(panel)
        if not scores or not scores[0]:
            continue
        n_layers, n_heads = len(scores[0]), len(scores[0][0])
        for layer in range(n_layers):
            for head in range(n_heads):
                data.append({
                    "type": "scatter", "mode": "lines+markers", "x": x, "y": [s[layer][head] for s in scores],
                    "name": f"layer {layer} · head {head}", "legendgroup": f"{layer}-{head}",
                    "showlegend": panel == 0,
                    "line": {"color": HEAD_COLORS[head % len(HEAD_COLORS)], "width": 2,
                             "dash": LAYER_DASHES[layer % len(LAYER_DASHES)]},
                    "marker": {"size": 6},
                    "hovertemplate": f"layer {layer} · head {head}<br>step %{{x}}: %{{y:.2f}}<extra>{names[panel]}"
                                     "</extra>",
                    "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                })
        layout[f"xaxis{suffix}"].update(type="category", title={"text": "step"}, showgrid=True, gridcolor=GRID)
        layout[f"yaxis{suffix}"].update(range=[0, 1.02], showgrid=True, gridcolor=GRID, zeroline=False)
    layout["shapes"] = [
        {"type": "rect", "xref": f"x{axis_suffix(panel)}", "yref": "paper", "x0": index - 0.4, "x1": index + 0.4,
         "y0": 0, "y1": 1, "fillcolor": CHOSEN_BAND, "line": {"width": 0}, "layer": "below"}
        for panel in range(2)
    ]
    layout.update(
        height=380, margin={"l": 10, "r": 10, "t": 80, "b": 10}, paper_bgcolor=CLEAR, plot_bgcolor=CLEAR,
        title={"text": title, "font": {"size": 14}, "x": 0.01},
        legend={"orientation": "h", "y": -0.2, "x": 0},
    )
    return fast_figure(data, layout)


def embedding_map_figure(tokens: Sequence[str], xy: Sequence[Sequence[float]], variance: Sequence[float],
                         labels: Sequence[str] = (), title: str = "") -> PlainFigure:
    """Every token of the map as a grey point at its 2-D coordinates; the tokens ``labels`` names are
    orange and written beside their point.

    >>> figure = embedding_map_figure([" the", "a", "."], [[0, 1], [1, 0], [2, 2]], [0.3, 0.2], labels=["the"])
    >>> [trace.name for trace in figure.data], figure.data[1].text
    (['tokens', 'labelled'], ('·the',))
    """
    hover = [visible_token(token) for token in tokens]
    data = [{
        "type": "scattergl" if len(tokens) > 2000 else "scatter", "mode": "markers", "name": "tokens",
        "x": [p[0] for p in xy], "y": [p[1] for p in xy], "text": hover,
        "marker": {"color": POINT_GREY, "size": 5, "opacity": 0.6},
        "hovertemplate": "'%{text}'<extra></extra>",
    }]
    chosen = labelled_points(tokens, labels)
    data.append({
        "type": "scatter", "mode": "markers+text", "name": "labelled", "x": [xy[i][0] for i in chosen],
        "y": [xy[i][1] for i in chosen], "text": [hover[i] for i in chosen], "textposition": "top center",
        "textfont": {"size": 14}, "marker": {"color": LABEL_COLOR, "size": 9},
        "hovertemplate": "'%{text}'<extra></extra>",
    })
    axis = {"showgrid": True, "gridcolor": GRID, "zeroline": True, "zerolinecolor": GRID}
    first, second = (list(variance) + [0.0, 0.0])[:2]
    layout = {
        "height": 520, "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "paper_bgcolor": CLEAR, "plot_bgcolor": CLEAR,
        "title": {"text": title, "font": {"size": 14}, "x": 0.01}, "showlegend": False,
        "xaxis": {**axis, "title": {"text": f"component 1 ({first:.0%} of the variance)"}},
        "yaxis": {**axis, "title": {"text": f"component 2 ({second:.0%} of the variance)"}},
    }
    return fast_figure(data, layout)


def note_figure(message: str, height: int = 160) -> PlainFigure:
    """An empty plot that says why there is nothing to draw (a run without a tokenizer has no text views).

    >>> note_figure("No text views.").layout.annotations[0].text
    'No text views.'
    """
    layout = {
        "height": height, "paper_bgcolor": CLEAR, "plot_bgcolor": CLEAR, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                         "font": {"size": 14, "color": INK}}],
    }
    return fast_figure([], layout)
