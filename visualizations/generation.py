"""Generation views: the candidates the model considered at one step, and the text with the chosen token marked.

The text is light HTML, cheap enough to send after every token while the model writes (each update adds one
span at the end). The bar chart is a Plotly figure (about 10 kilobytes): the Generate tab draws it once, for the
step the student looks at. It keeps a fixed x range (0 to 1) and a fixed number of bars, so moving from step to
step compares like with like.
"""

from __future__ import annotations

import html

from visualizations.attention import PlainFigure, fast_figure
from visualizations.tokens import VISIBLE_WHITESPACE

CHOSEN_COLOR = "#e6550d"
OTHER_COLOR = "#9ecae1"
CACHED_COLOR = "#2b8cbe"  # the KV-cache speed plot: with the cache
UNCACHED_COLOR = "#e6550d"  # without it
CACHE_FILL_COLOR = "rgba(120, 120, 120, 0.18)"  # positions stored in the cache


def visible_token(token: str) -> str:
    """A token's text with its whitespace drawn as the Tokenizer tab draws it (· a space, ↵ a new line);
    an empty token is ∅.

    >>> visible_token(" the"), visible_token("\\n"), visible_token("")
    ('·the', '↵', '∅')
    """
    return "".join(VISIBLE_WHITESPACE.get(char, char).rstrip("\n") or char for char in token) or "∅"



def candidates_figure(candidates: list[tuple[str, float]], chosen: str | None, step: int, n_bars: int = 10,
                      chosen_prob: float | None = None, title: str | None = None) -> PlainFigure:
    """Bars of the `n_bars` most likely next tokens at one step; the chosen token is orange.

    candidates: (token text, probability), best first. chosen None: nothing chosen yet (the prompt's next
    token before a run); `title` then says what the bars are.
    """
    rows = list(candidates[:n_bars])
    labels = [f"{rank + 1}. {visible_token(token)}" for rank, (token, _) in enumerate(rows)]
    labels += [" " * (k + 1) for k in range(n_bars - len(rows))]  # empty rows keep the height steady
    probs = [prob for _, prob in rows] + [0.0] * (n_bars - len(rows))
    colors = [CHOSEN_COLOR if token == chosen else OTHER_COLOR for token, _ in rows] + [OTHER_COLOR] * (
        n_bars - len(rows))
    if title is None:
        title = f"step {step}: the {n_bars} most likely next tokens (orange = chosen)"
        if chosen not in [token for token, _ in rows] and chosen_prob is not None:
            title = f"step {step}: chosen {visible_token(chosen)!r} (p = {chosen_prob:.1%}) is not in the top {n_bars}"
    bars = {"type": "bar", "x": probs, "y": labels, "orientation": "h", "marker": {"color": colors},
            "text": [f"{p:.1%}" if p > 0 else "" for p in probs], "textposition": "outside", "cliponaxis": False,
            "hovertemplate": "%{y}: %{x:.4f}<extra></extra>"}
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"range": [0, 1.12], "tickformat": ".0%", "title": {"text": "probability"}},
        "yaxis": {"autorange": "reversed", "categoryorder": "array", "categoryarray": labels,
                  "tickfont": {"size": 13}},
        "height": 420,
        "margin": {"l": 10, "r": 30, "t": 50, "b": 10},
        "plot_bgcolor": "white",
        "uirevision": "candidates",  # keep zoom and layout steady as the step slider redraws it
    }
    return fast_figure([bars], layout)


def kv_speed_figure(lengths: list[int], cached_ms: list[float], uncached_ms: list[float],
                    cache_positions: list[int]) -> PlainFigure:
    """Milliseconds per new token against the length of the text, with and without the KV cache, and the
    positions the cache holds (right axis).

    lengths[i]: tokens the model reads to make new token i; cache_positions[i]: positions stored in each
    layer's cache once it is made (empty without a cache, e.g. the book layer alone).
    """
    data = [
        {"type": "scatter", "mode": "lines", "x": lengths, "y": cache_positions, "yaxis": "y2",
         "name": "positions stored in the KV cache (right axis)", "fill": "tozeroy",
         "line": {"color": CACHE_FILL_COLOR, "width": 0}, "fillcolor": CACHE_FILL_COLOR,
         "hovertemplate": "the cache holds %{y} positions<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "x": lengths, "y": uncached_ms, "name": "without the cache",
         "line": {"color": UNCACHED_COLOR, "width": 2}, "marker": {"size": 4},
         "hovertemplate": "%{x} tokens read: %{y:.2f} ms<extra>without the cache</extra>"},
        {"type": "scatter", "mode": "lines+markers", "x": lengths, "y": cached_ms, "name": "with the KV cache",
         "line": {"color": CACHED_COLOR, "width": 2}, "marker": {"size": 4},
         "hovertemplate": "%{x} tokens read: %{y:.2f} ms<extra>with the KV cache</extra>"},
    ]
    if not cache_positions:
        data = data[1:]
    top = max([*cached_ms, *uncached_ms, 0.0])
    layout = {
        "title": {"text": "Time to make each new token as the text grows", "font": {"size": 14}},
        "xaxis": {"title": {"text": "tokens in the text (prompt + generated so far)"}},
        "yaxis": {"title": {"text": "ms per new token"}, "rangemode": "tozero", "range": [0, 1.1 * top or 1]},
        "yaxis2": {"title": {"text": "positions in the cache"}, "overlaying": "y", "side": "right",
                   "rangemode": "tozero", "showgrid": False},
        "height": 320,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "y": -0.3},
        "plot_bgcolor": "white",
    }
    return fast_figure(data, layout)


def prompt_span(prompt: str) -> str:
    """The prompt, in the theme's muted text colour (readable in light and dark), before the generated tokens."""
    return f'<span class="prompt" style="color:var(--body-text-color-subdued, #555)">{html.escape(prompt)}</span>'


def token_span(step: int, token: str, prob: float, chosen: bool = False) -> str:
    """One generated token as a span with its probability on hover; the chosen step is orange (and marked
    `data-chosen`, so the page can scroll the text to it).

    >>> token_span(1, " <b>", 0.5)
    '<span class="tok" title="step 1: p = 0.500" style="background:#deebf7;border-radius:3px;color:#111"> &lt;b&gt;</span>'
    """
    style = "background:#fdae6b;outline:2px solid #e6550d;" if chosen else "background:#deebf7;"
    marker = " data-chosen" if chosen else ""
    return (f'<span class="tok" title="step {step}: p = {prob:.3f}" style="{style}border-radius:3px;color:#111"'
            f'{marker}>{html.escape(token)}</span>')


def generation_html(prompt: str, tokens: list[str], probs: list[float], highlight: int | None = None) -> str:
    """The prompt, then every generated token as a span with its probability on hover; `highlight` is marked.

    There is no wrapping element (the Generate tab's gr.HTML carries the classes `lab-tokens lab-generation`):
    so while tokens stream in, each update is the previous text plus one span, and Gradio sends only that span.

    >>> "title=\\"step 1" in generation_html("Hi", [" there"], [0.5])
    True
    """
    spans = [token_span(step, token, prob, chosen=highlight == step)
             for step, (token, prob) in enumerate(zip(tokens, probs), start=1)]
    return prompt_span(prompt) + "".join(spans)
