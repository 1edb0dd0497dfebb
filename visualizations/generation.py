"""Generation views: the candidates the model considered at one step, and the text with the chosen token marked.

The text is light HTML, cheap enough to send after every token while the model writes (each update adds one
span at the end). The bar chart is a Plotly figure (about 10 kilobytes): the Generate tab draws it once, for the
step the student looks at. It keeps a fixed x range (0 to 1) and a fixed number of bars, so moving from step to
step compares like with like.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from visualizations.attention import fast_figure

CHOSEN_COLOR = "#e6550d"
OTHER_COLOR = "#9ecae1"


def _visible(token: str) -> str:
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def candidates_figure(candidates: list[tuple[str, float]], chosen: str, step: int, n_bars: int = 10,
                      chosen_prob: float | None = None) -> go.Figure:
    """Bars of the `n_bars` most likely next tokens at one step; the chosen token is orange.

    candidates: (token text, probability), best first.
    """
    rows = list(candidates[:n_bars])
    labels = [f"{rank + 1}. {_visible(token)}" for rank, (token, _) in enumerate(rows)]
    labels += [" " * (k + 1) for k in range(n_bars - len(rows))]  # empty rows keep the height steady
    probs = [prob for _, prob in rows] + [0.0] * (n_bars - len(rows))
    colors = [CHOSEN_COLOR if token == chosen else OTHER_COLOR for token, _ in rows] + [OTHER_COLOR] * (
        n_bars - len(rows))
    title = f"step {step}: the {n_bars} most likely next tokens (orange = chosen)"
    if chosen not in [token for token, _ in rows] and chosen_prob is not None:
        title = f"step {step}: chosen {_visible(chosen)!r} (p = {chosen_prob:.1%}) is not in the top {n_bars}"
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


def prompt_span(prompt: str) -> str:
    """The prompt, in the theme's muted text colour (readable in light and dark), before the generated tokens."""
    return f'<span class="prompt" style="color:var(--body-text-color-subdued, #555)">{html.escape(prompt)}</span>'


def token_span(step: int, token: str, prob: float, chosen: bool = False) -> str:
    """One generated token as a span with its probability on hover; the chosen step is orange.

    >>> token_span(1, " <b>", 0.5)
    '<span class="tok" title="step 1: p = 0.500" style="background:#deebf7;border-radius:3px;color:#111"> &lt;b&gt;</span>'
    """
    style = "background:#fdae6b;outline:2px solid #e6550d;" if chosen else "background:#deebf7;"
    return (f'<span class="tok" title="step {step}: p = {prob:.3f}" style="{style}border-radius:3px;color:#111">'
            f'{html.escape(token)}</span>')


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
