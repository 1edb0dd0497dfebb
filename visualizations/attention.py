"""Attention matrices as heatmaps: scores, weights, the causal mask and dropout, with token labels.

A masked cell (a future token the query may not look at) is not the same as a small weight, so it is
drawn by its own grey layer with the hover text "masked", and its value in the main layer is NaN (null).
Cells zeroed by dropout get their own dark layer with the hover text "dropped".

Speed: the figures are written as plain dicts (lists of numbers rounded to what the hover shows) and wrapped
by `fast_figure` (a `PlainFigure`), which skips plotly's property-by-property checks and its objects and writes
the dicts as JSON. Those checks, plotly's objects and `make_subplots` cost 20-50 ms a figure, more than the model
itself; `grid_layout` gives make_subplots' geometry in a few lines. The tests check every figure once with
plotly's full validation.
"""

from __future__ import annotations

import functools
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


class PlainFigure:
    """A plotly figure kept as the plain dicts it was written as, turned into JSON without plotly's objects.

    Even unchecked, ``go.Figure`` turns every dict into a tree of plotly objects and ``to_json`` deep-copies that
    tree back into dicts: about 30 ms for one attention ladder, more than its forward pass, and all of it garbage
    in reference cycles that Python's collector frees later, in one pause of the whole server. ``to_json`` here
    writes the dicts as they are, with plotly's default template as ``go.Figure`` adds it: the same figure
    (tests/test_plain_figure.py compares the two). Anything else (``.data[0].z``, ``.layout.height``,
    ``update_layout``, ...) is plotly's own: the first such use builds the ``go.Figure`` (unchecked, as before),
    and from then on that figure, with any change made to it, is the one written.

    >>> import json
    >>> figure = PlainFigure([{"type": "bar", "x": ["a"], "y": [1]}], {"height": 200})
    >>> json.loads(figure.to_json())["data"]
    [{'type': 'bar', 'x': ['a'], 'y': [1]}]
    >>> figure.layout.height
    200
    """

    def __init__(self, data: list[dict], layout: dict):
        self._spec = {"data": data, "layout": layout}
        self._figure: go.Figure | None = None

    @property
    def figure(self) -> go.Figure:
        """The plotly Figure of these dicts, built on first use."""
        if self._figure is None:
            self._figure = go.Figure(self._spec, _validate=False)
        return self._figure

    def to_json(self) -> str:
        """The figure as the JSON plotly.js draws (what gr.Plot sends to the browser)."""
        if self._figure is None:
            try:
                return plain_json(self._spec)
            except TypeError:  # a value orjson cannot write: plotly's own encoder can
                pass
        return self.figure.to_json()

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_spec", "_figure"):  # copy and pickle probes, a half-made object
            raise AttributeError(name)
        return getattr(self.figure, name)


_templates: dict[str | None, dict | None] = {}  # plotly's default template name -> its dict, made once


def default_template() -> dict | None:
    """Plotly's default template as the dict ``go.Figure`` puts in every figure's layout."""
    import plotly.io as pio

    name = pio.templates.default
    if name not in _templates:
        _templates[name] = pio.templates[name].to_plotly_json() if name else None
    return _templates[name]


def plain_json(spec: dict) -> str:
    """``{"data": [...], "layout": {...}}`` as figure JSON, with the default template when the layout has none."""
    import orjson

    layout = spec["layout"]
    if "template" not in layout and (template := default_template()) is not None:
        layout = {**layout, "template": template}
    return orjson.dumps({"data": spec["data"], "layout": layout}, default=_plain_value,
                        option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _plain_value(value):
    """What orjson cannot write itself: numpy numbers and arrays it does not take (raising TypeError otherwise)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def fast_figure(data: list[dict], layout: dict) -> PlainFigure:
    """A figure made from plain dicts without plotly's checks or objects (they cost more than the view itself).

    It still gets plotly's default template, so it looks the same as a checked one.
    """
    return PlainFigure(data, layout)


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
    ['0:the', '1:·cat', '2:·the']
    """
    return [f"{i}:{visible_token(tok)}" for i, tok in enumerate(tokens)]


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


def panels_figure(panels: list[Panel], tokens: list[str], title: str = "", columns: int | None = None) -> PlainFigure:
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


def head_figure(weights: np.ndarray, tokens: list[str], title: str, causal: bool = True) -> PlainFigure:
    """One attention head enlarged: weights (T, T), future cells drawn as masked when `causal`."""
    weights = np.asarray(weights, dtype=np.float64)
    masked = np.triu(np.ones_like(weights, dtype=bool), k=1) if causal else None
    return panels_figure([Panel(title, weights, "weights", masked=masked)], tokens)


# ---------------------------------------------------------------------------------------------------------------
# The Attention tab's ladder: matrices of any shape side by side, numbers in the cells, readable on a projector
# ---------------------------------------------------------------------------------------------------------------

LADDER_WIDTH = 1200  # px: the tab's plots are 1216 px wide in a 1280-1400 px wide window (960 at 1024)
CELL_FONT = 14  # numbers in the cells and the axis labels (a projector's back row)
TITLE_FONT = 16
SMALL_FONT = 12  # axis labels once the cells are narrower than 24 px (many tokens)
MAX_CELL, MIN_CELL = 72, 10  # cell width, px
MAX_CELL_HEIGHT = 40  # px: a cell this tall holds a number; taller only makes the figure longer
PANEL_GAP = 22  # px between panels that share their row labels
ROW_GAP = 18  # px between rows of panels
MAX_LABEL_CHARS = 12  # longer tokens are cut on the axes (the hover shows the whole label)
# Text and backgrounds that read in the light and in the dark theme: transparent paper; grey text (Gradio's own
# gray-500: 4.8:1 on white, 3.1:1 on the dark theme's #1f2937 blocks, where app.py's CSS also lightens plot text);
# the numbers in the cells in black or white, whichever plotly finds contrasts with the cell.
INK = "#6b7280"
PLANNED_LABEL_FONT = 16  # label room is planned for 16 px: projector mode (ui.common.PAGE_JS) draws them that size
# Arial's metrics (Liberation Sans on Linux, Helvetica on a Mac): the layout is planned with them. (Plotly's own
# default falls back to the much wider Verdana on Windows machines without Open Sans.)
FONT_FAMILY = "Arial, 'Liberation Sans', Helvetica, sans-serif"
VECTOR_COLORS = "PuOr_r"  # inputs, W, queries, keys, values, context vectors: purple below zero, orange above
LADDER_MASKED_COLOR = "#b4b4b4"
LADDER_COLORS = {"weights": WEIGHT_COLORS, "scores": SCORE_COLORS, "vectors": VECTOR_COLORS}


@dataclass
class Matrix:
    """One labelled matrix of the ladder: `values` (rows, columns), its row and column labels and its kind.

    kind: "weights" (blue, 0 to the largest weight or 2/T), "scores" (blue below 0, red above) or "vectors"
    (inputs, W matrices, queries, keys, values, context: purple below 0, orange above).
    `masked` cells (the future) are drawn grey with `masked_text` in them; `dropped` cells dark with "0".
    """

    title: str
    values: np.ndarray
    rows: list[str]
    columns: list[str]
    kind: str = "vectors"
    decimals: int = 4  # the book prints 4 (its inputs 2); fewer when the cells are too narrow
    masked: np.ndarray | None = None
    dropped: np.ndarray | None = None
    masked_text: str = "×"
    row_name: str = ""  # what the hover calls a row and a column ("query", "key", "input"), before its label
    column_name: str = ""


def dim_labels(count: int, prefix: str = "dim") -> list[str]:
    """Labels of a feature axis.

    >>> dim_labels(3)
    ['dim 0', 'dim 1', 'dim 2']
    """
    return [f"{prefix} {i}" for i in range(count)]


# Whitespace as the Tokenizer tab draws it (visualizations.tokens.VISIBLE_WHITESPACE; that module imports this one)
LABEL_WHITESPACE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}


def visible_token(token: str) -> str:
    """Whitespace made visible inside a token, so ' the' and 'the' look different: a space as ·, a new line as ↵.

    >>> visible_token(" the\\n"), visible_token("")
    ('·the↵', '∅')
    """
    return "".join(LABEL_WHITESPACE.get(char, char) for char in token) or "∅"


def short_token_labels(tokens: list[str], max_chars: int = MAX_LABEL_CHARS) -> list[str]:
    """Axis labels for tokens: the position, then the token with its whitespace drawn as in the Tokenizer tab
    (· a space, ↵ a new line), cut to `max_chars` characters (the position keeps equal tokens apart).

    >>> short_token_labels([" a", " extraordinarily", "\\n", ""])
    ['0:·a', '1:·extraord…', '2:↵', '3:∅']
    """
    labels = token_labels(tokens)
    return [label if len(label) <= max_chars else label[:max_chars - 1] + "…" for label in labels]


_NARROW = set(".,:;!|il1'")  # rough glyph widths (em) of a sans-serif font, enough to plan a layout
_WIDE = set("mwMW@%")


def text_width(text: str, size: float) -> float:
    """About how many px `text` takes at font `size` (digits 0.56 em, '.' 0.28 em, capitals 0.67 em).

    >>> round(text_width("0.1385", 14))
    43
    """
    width = 0.0
    for char in text:
        if char.isdigit():
            width += 0.56
        elif char in _NARROW or char == " ":
            width += 0.28
        elif char in "-−":
            width += 0.34
        elif char in _WIDE:
            width += 0.85
        elif char.isupper():
            width += 0.67
        else:
            width += 0.55
    return width * size


def cell_text(values: np.ndarray, decimals: int) -> list[list[str]]:
    """Each value written with `decimals` decimals ("-0.00" as "0.00"); NaN and infinities as "".

    >>> cell_text(np.array([[0.13852, -0.00001, np.nan]]), 2)
    [['0.14', '0.00', '']]
    """
    def one(value: float) -> str:
        if not math.isfinite(value):
            return ""
        text = f"{value:.{decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text

    return [[one(float(value)) for value in row] for row in np.asarray(values, dtype=np.float64)]


def fitting_decimals(matrix: Matrix, cell_width: float) -> int | None:
    """The most decimals (the matrix's own, else 2) whose widest number fits a cell at CELL_FONT; None if none.

    >>> fitting_decimals(Matrix("w", np.array([[0.1385, -0.0739]]), ["0"], ["0", "1"]), 60)
    4
    >>> fitting_decimals(Matrix("w", np.array([[0.1385, -0.0739]]), ["0"], ["0", "1"]), 40), \
fitting_decimals(Matrix("w", np.array([[0.1385]]), ["0"], ["0"]), 20)
    (2, None)
    """
    for decimals in sorted({matrix.decimals, min(matrix.decimals, 2)}, reverse=True):
        if _number_width(matrix, decimals) <= cell_width:
            return decimals
    return None


@functools.cache
def _ladder_colorscales() -> dict[str, list]:
    return {kind: colorscale(name) for kind, name in LADDER_COLORS.items()}


def _ladder_colorscale(kind: str) -> list:
    return [list(step) for step in _ladder_colorscales()[kind]]  # a copy: figures may be changed after


def _color_range(matrix: Matrix, shown: np.ndarray) -> tuple[float, float]:
    finite = shown[np.isfinite(shown)]
    if matrix.kind == "weights":  # 0 to the largest weight, or to twice the even share 1/T if that is more: even
        # weights (untrained ones are all near 1/T) look even, and yet which key a query prefers shows
        return 0.0, max(float(finite.max()) if finite.size else 1.0, 2 / max(len(matrix.columns), 1))
    bound = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9)
    return -bound, bound


def matrix_traces(matrix: Matrix, decimals: int | None, font_size: int = CELL_FONT) -> list[dict]:
    """The heatmaps of one matrix: its values (masked cells null), then a grey 'masked' and a dark 'dropped' layer.

    z holds the values rounded to 4 decimals (what the hover shows); `text` the numbers printed in the cells.
    """
    values = np.asarray(matrix.values, dtype=np.float64)
    masked = masked_cells(values) if matrix.masked is None else np.asarray(matrix.masked, dtype=bool)
    shown = np.where(masked, np.nan, values)
    zmin, zmax = _color_range(matrix, shown)
    where = f"{matrix.row_name} %{{y}}".strip() + "<br>" + f"{matrix.column_name} %{{x}}".strip()
    value_name = {"weights": "weight", "scores": "score"}.get(matrix.kind, "value")
    trace = {
        "type": "heatmap", "name": matrix.title.replace("<br>", " "), "z": rounded(shown, 4),
        "x": matrix.columns, "y": matrix.rows, "colorscale": _ladder_colorscale(matrix.kind),
        "zmin": zmin, "zmax": zmax, "showscale": False, "xgap": 1, "ygap": 1,
        "hovertemplate": f"{where}<br>{value_name} %{{z:.4f}}<extra></extra>",
    }
    if decimals is not None:
        trace.update(text=cell_text(shown, decimals), texttemplate="%{text}", textfont={"size": font_size})
    traces = [trace]
    layers = []
    if masked.any():
        layers.append((masked, LADDER_MASKED_COLOR, "masked", matrix.masked_text, "#3c3c3c", "masked: a future token"))
    if matrix.dropped is not None and np.asarray(matrix.dropped).any():
        layers.append((np.asarray(matrix.dropped, dtype=bool), DROPPED_COLOR, "dropped", "0", "#ffffff",
                       "dropped by dropout: 0"))
    for mask, color, name, mark, text_color, hover in layers:
        layer = {
            "type": "heatmap", "name": name, "z": np.where(mask, 1, None).tolist(), "x": matrix.columns,
            "y": matrix.rows, "colorscale": [[0, color], [1, color]], "zmin": 0, "zmax": 1, "showscale": False,
            "xgap": 1, "ygap": 1, "hovertemplate": f"{where}<br>{hover}<extra></extra>",
        }
        if decimals is not None:
            layer.update(text=np.where(mask, mark, "").tolist(), texttemplate="%{text}",
                         textfont={"size": font_size, "color": text_color})
        traces.append(layer)
    return traces


def _label_room(labels: list[str], size: float) -> float:
    """The px an axis's labels take, planned for the 16 px labels of projector mode whatever their size here."""
    return _labels_width(tuple(labels), max(size, PLANNED_LABEL_FONT)) + 10


@functools.lru_cache(maxsize=256)
def _labels_width(labels: tuple[str, ...], size: float) -> float:
    return max((text_width(label, size) for label in labels), default=0.0)


def _title_lines(matrix: Matrix) -> list[str]:
    return matrix.title.split("<br>")


def _title_html(title: str) -> str:
    """The first line of a title in bold (the matrix's name), the others (how it is computed) plain.

    >>> _title_html("scores<br>= queries · keysᵀ")
    '<b>scores</b><br>= queries · keysᵀ'
    """
    name, *rest = title.split("<br>")
    return "<br>".join([f"<b>{name}</b>", *rest])


def _title_width(matrix: Matrix) -> float:
    return _title_text_width(matrix.title)


@functools.lru_cache(maxsize=256)
def _title_text_width(title: str) -> float:
    return max(text_width(line, TITLE_FONT) * (1.1 if number == 0 else 1.0)  # the first line is bold
               for number, line in enumerate(title.split("<br>"))) + 8


def _label_size(cell: float) -> int:
    return CELL_FONT if cell >= 20 else SMALL_FONT


def _number_width(matrix: Matrix, decimals: int) -> float:
    """The px the widest of a matrix's numbers takes in a cell (with `decimals`, at CELL_FONT, plus a margin).

    Every digit is as wide as every other, so the widest number is the largest or the most negative one.
    """
    values = np.asarray(matrix.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0
    extremes = np.array([[finite.max(), finite.min()]])
    return max(text_width(text, CELL_FONT) for text in cell_text(extremes, decimals)[0]) + 6


def _cell_width(matrix: Matrix, cell: float) -> float:
    """The width of a matrix's cells: `cell`, but a matrix of vectors (a few feature columns) widens its cells up
    to its title's width, to labels that stand upright ("dim 0") and, in cells tall enough for numbers, to its
    numbers with all their decimals."""
    if matrix.kind != "vectors":
        return cell
    wanted = max(_title_width(matrix) / len(matrix.columns), _label_room(matrix.columns, _label_size(cell)) - 4)
    if min(cell, MAX_CELL_HEIGHT) >= CELL_FONT + 6:
        wanted = max(wanted, _number_width(matrix, matrix.decimals))
    return max(cell, min(MAX_CELL, wanted))


def _widest_row(rows: list[list[Matrix]], cell: float) -> float:
    """The px width of the widest row of matrices with cells `cell` wide (with the row labels and the gaps)."""
    widest = 0.0
    for row in rows:
        x = PANEL_GAP * (len(row) - 1)
        for index, matrix in enumerate(row):
            if index == 0 or matrix.rows != row[index - 1].rows:
                x += _label_room(matrix.rows, _label_size(cell))
            x += max(len(matrix.columns) * _cell_width(matrix, cell), _title_width(matrix))
        widest = max(widest, x)
    return widest


def _largest_cell(rows: list[list[Matrix]], width: float) -> float:
    """The largest cell width (MIN_CELL .. MAX_CELL, whole px) with which every row fits `width` (MIN_CELL if
    none does). A row only gets wider with its cells, so a binary search finds it."""
    low, high = MIN_CELL, MAX_CELL  # fits at low (or low is MIN_CELL); the answer is in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if _widest_row(rows, float(middle)) <= width:
            low = middle
        else:
            high = middle - 1
    return float(low)


def _numbers_fit(rows: list[list[Matrix]], cell: float) -> bool:
    return min(cell, MAX_CELL_HEIGHT) >= CELL_FONT + 6 and \
        all(fitting_decimals(matrix, _cell_width(matrix, cell)) is not None for row in rows for matrix in row)


def _split(row: list[Matrix]) -> list[list[Matrix]]:
    """A row of matrices cut in two rows, the first one the longer when the count is odd.

    >>> row = [Matrix(title, np.zeros((2, 2)), ["a", "b"], ["a", "b"]) for title in "pqr"]
    >>> [[matrix.title for matrix in part] for part in _split(row)]
    [['p', 'q'], ['r']]
    """
    half = (len(row) + 1) // 2
    return [row[:half], row[half:]]


def wrapped_rows(rows: list[list[Matrix]], width: float = LADDER_WIDTH) -> list[list[Matrix]]:
    """The rows as given, or, when the numbers would not fit in the cells of a short sentence's matrices
    (MAX_TEXT_TOKENS rows or fewer) but do once the widest rows are cut in two, the rows cut."""
    rows = [row for row in rows if row]
    if _numbers_fit(rows, _largest_cell(rows, width)) or \
            max(len(matrix.rows) for row in rows for matrix in row) > MAX_TEXT_TOKENS:
        return rows
    wrapped = rows
    while any(len(row) > 1 for row in wrapped):
        widest = max((row for row in wrapped if len(row) > 1), key=lambda row: _widest_row([row], MAX_CELL))
        wrapped = [part for row in wrapped for part in (_split(row) if row is widest else [row])]
        if _numbers_fit(wrapped, _largest_cell(wrapped, width)):
            return wrapped
    return rows


@dataclass
class _Placed:
    """Where one matrix goes, in px from the plot's top left corner."""

    left: float  # of its heatmap
    top: float
    cell_width: float
    label_room: float  # px left of the heatmap for its row labels (0: its left neighbour's labels serve)


def ladder_figure(rows: list[list[Matrix]], width: int = LADDER_WIDTH) -> PlainFigure:
    """Rows of labelled matrices of any shapes, left to right, the numbers printed in the cells where they fit
    (hover for the rest); each matrix's title above it (a "<br>" splits it in lines, the first is bold).

    Every cell has the same height, so the rows of the matrices side by side line up (one token per row); every
    cell has the same width too, except that a matrix of vectors (a few feature columns) widens its cells up to
    its title's width. A matrix whose row labels are those of its left neighbour does not repeat them. A row too
    wide for the numbers of a short sentence is cut in two (`wrapped_rows`). The layout is planned for a plot
    `width` px wide (a wider one stretches it); the height is what the rows need.
    """
    rows = wrapped_rows(rows, width)
    cell = _largest_cell(rows, width)
    size = _label_size(cell)
    cell_height = max(size + 4, min(cell, MAX_CELL_HEIGHT))

    def column_labels(matrix: Matrix, cell_width: float) -> tuple[int, float]:
        """The angle of a matrix's column labels and the height they take under it."""
        if _label_room(matrix.columns, size) - 4 <= cell_width:
            return 0, max(size, PLANNED_LABEL_FONT) + 10
        longest = _label_room(matrix.columns, size)
        if cell_width >= 20:
            return -45, (longest + size) * 0.72 + 6
        return -90, longest + 6

    # Place the matrices: per row a band for the titles, then the matrices, top-aligned, with their column labels.
    placed: list[list[_Placed]] = []
    y = 4.0
    for row in rows:
        title_height = 21 * max(len(_title_lines(matrix)) for matrix in row) + 6
        x, band, below = 0.0, [], 0.0
        for index, matrix in enumerate(row):
            room = _label_room(matrix.rows, size) if index == 0 or matrix.rows != row[index - 1].rows else 0.0
            cell_width = _cell_width(matrix, cell)
            slot = max(len(matrix.columns) * cell_width, _title_width(matrix))
            left = x + room + (slot - len(matrix.columns) * cell_width) / 2  # centred under a wider title
            band.append(_Placed(left, y + title_height, cell_width, room))
            x += room + slot + PANEL_GAP
            below = max(below, len(matrix.rows) * cell_height + column_labels(matrix, cell_width)[1])
        placed.append(band)
        y += title_height + below + ROW_GAP
    height = int(y - ROW_GAP + 4)

    layout: dict = {"annotations": []}
    data: list[dict] = []
    index = 0
    for row, band in zip(rows, placed):
        for matrix, place in zip(row, band):
            suffix = axis_suffix(index)
            index += 1
            right = place.left + len(matrix.columns) * place.cell_width
            bottom = place.top + len(matrix.rows) * cell_height
            x_domain = [round(place.left / width, 5), round(min(right / width, 1.0), 5)]
            y_domain = [round(max(1 - bottom / height, 0.0), 5), round(1 - place.top / height, 5)]
            axis = {"showgrid": False, "zeroline": False, "ticks": "", "fixedrange": True, "type": "category",
                    "tickfont": {"size": size, "color": INK}, "automargin": False}
            layout[f"xaxis{suffix}"] = {**axis, "anchor": f"y{suffix}", "domain": x_domain,
                                        "tickangle": column_labels(matrix, place.cell_width)[0]}
            layout[f"yaxis{suffix}"] = {**axis, "anchor": f"x{suffix}", "domain": y_domain, "autorange": "reversed",
                                        "showticklabels": place.label_room > 0}
            decimals = fitting_decimals(matrix, place.cell_width) if cell_height >= CELL_FONT + 6 else None
            for trace in matrix_traces(matrix, decimals):
                data.append({**trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
            layout["annotations"].append({
                "text": _title_html(matrix.title), "showarrow": False, "xref": "paper", "yref": "paper",
                "x": sum(x_domain) / 2, "xanchor": "center", "y": y_domain[1] + 4 / height, "yanchor": "bottom",
                "font": {"size": TITLE_FONT, "color": INK},
            })
    layout.update(
        height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0, "autoexpand": False},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", showlegend=False,
        font={"color": INK, "size": CELL_FONT, "family": FONT_FAMILY},
        hoverlabel={"font": {"size": CELL_FONT, "family": FONT_FAMILY}},
    )
    return fast_figure(data, layout)
