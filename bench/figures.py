"""What the explore views cost with their figures written from plain dicts (PlainFigure) against plotly's objects.

Each view (/attention, /inside, /generate, /tokenize, with the app's own handlers and a new sentence each call so
no cache answers) is drawn alternately both ways: ``PlainFigure.to_json`` writing the dicts (the app) and the same
dicts through ``go.Figure(..., _validate=False).to_json()`` (the reference: what the views did before). Order
swaps every round; the lines compare the fastest of each. ``cycles_per_call``: objects the view left in reference
cycles, which Python's collector frees later in one pause that stops every request of the server (under the
classroom bench those pauses took 20-130 ms every ~5 s).

    python bench/figures.py                 # 12 rounds per view, about a minute
    python bench/figures.py --rounds 30 --views /attention

Prints one JSON line per view: {"bench": "figures", "view": "/attention", "plain_ms": ..., "plotly_ms": ...,
"ratio": plain / plotly, "plain_cycles_per_call": ..., "plotly_cycles_per_call": ..., "figures_per_call": ...}
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIEWS = ["/attention", "/inside", "/generate", "/tokenize"]
SENTENCES = ["The cat sat on the mat because it was tired.", "Every effort moves you forward, one step at a time.",
             "Attention lets each token look back at the ones before it."]


@contextlib.contextmanager
def through_plotly():
    """PlainFigure.to_json as the views wrote figures before: plotly's Figure of the same dicts, then its JSON."""
    import plotly.graph_objects as go

    from visualizations.attention import PlainFigure

    plain = PlainFigure.to_json
    PlainFigure.to_json = lambda self: go.Figure(self._spec, _validate=False).to_json()
    try:
        yield
    finally:
        PlainFigure.to_json = plain


def view_caller(demo, endpoint: str):
    """call(text) -> runs the endpoint's handler with its defaults and this text, to the end of a generator."""
    import gradio as gr

    block_fn = next(fn for fn in demo.fns.values() if fn.api_name == endpoint.lstrip("/"))

    def call(text: str) -> None:
        values = [text if isinstance(c, gr.Textbox) else getattr(c, "value", None) for c in block_fn.inputs]
        result = block_fn.fn(*values)
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    return call


def counted(call, text: str) -> tuple[float, int, int]:
    """(seconds, objects left in reference cycles, figures written) of one call, the collector off meanwhile."""
    from visualizations.attention import PlainFigure

    written = [0]
    to_json = PlainFigure.to_json

    def counting(self):
        written[0] += 1
        return to_json(self)

    PlainFigure.to_json = counting
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        call(text)
        seconds = time.perf_counter() - start
        cycles = gc.collect()
    finally:
        gc.enable()
        PlainFigure.to_json = to_json
    return seconds, cycles, written[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated endpoints")
    args = parser.parse_args()
    import app

    demo = app.build_demo()
    for endpoint in args.views.split(","):
        call = view_caller(demo, endpoint)
        for warm in range(2):
            call(f"warm-up {warm}: {SENTENCES[0]}")
        plain, plotly, figures = [], [], 0
        for number in range(args.rounds):
            order = ["plain", "plotly"] if number % 2 == 0 else ["plotly", "plain"]
            for way in order:
                text = f"{way} {number}: {SENTENCES[number % len(SENTENCES)]}"  # new each time: no cache answers
                with through_plotly() if way == "plotly" else contextlib.nullcontext():
                    measured = counted(call, text)
                (plain if way == "plain" else plotly).append(measured)
                figures = max(figures, measured[2])
        best_plain, best_plotly = min(t for t, _, _ in plain), min(t for t, _, _ in plotly)
        print(json.dumps({
            "bench": "figures", "view": endpoint, "rounds": args.rounds, "plain_ms": round(best_plain * 1000, 2),
            "plotly_ms": round(best_plotly * 1000, 2), "ratio": round(best_plain / best_plotly, 3),
            "plain_cycles_per_call": round(sum(c for _, c, _ in plain) / len(plain)),
            "plotly_cycles_per_call": round(sum(c for _, c, _ in plotly) / len(plotly)),
            "figures_per_call": figures, "method": "fastest of each, alternating, order swapped every round",
        }), flush=True)


if __name__ == "__main__":
    main()
