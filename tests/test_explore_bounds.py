"""The explore tabs (Tokenizer, Attention, Inside GPT) under a class: bounded inputs, plain messages for bad
numbers, cached views equal to fresh ones within their budget, and figures that are still valid plotly."""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plotly.subplots import make_subplots

from ui import attention_tab, inside_tab, models, tokenizer_tab
from ui.common import friendly
from ui.view_cache import ResultCache, size_in_bytes
from visualizations.attention import Panel, grid_layout, head_figure, panels_figure
from visualizations.model import (
    attention_grid_figure,
    embedding_figure,
    parameter_figure,
    position_norm_figure,
)
from visualizations.tokens import cosine_heatmap, embedding_heatmaps, merge_steps_html

NANO = "Random init · nano (untrained)"
HUGE = 400_000
HUGE_WORDS = {
    "one letter": "a" * HUGE,
    "letters": "".join(chr(97 + (i * 7) % 26) for i in range(HUGE)),
    "emoji": "😀" * HUGE,
    "Chinese": "".join(chr(0x4E00 + (i * 31) % 2000) for i in range(HUGE)),
    "digits": "7" * HUGE,
}


def plot_json(value) -> dict:
    """A gr.Plot value (the PlotData the handlers return, or the API's dict) as the browser gets it."""
    plot = value.plot if hasattr(value, "plot") else value["plot"]
    return json.loads(plot)


# ---------------------------------------------------------------- the merge replay of a huge "word"
@pytest.mark.parametrize("kind", sorted(HUGE_WORDS))
def test_a_400000_character_word_replays_fast_and_small(kind):
    tokenizer_tab.replay_word("warm up")  # loads GPT-2's tokenizer once
    start = time.thread_time()
    html, slider = tokenizer_tab.replay_word(HUGE_WORDS[kind])
    seconds = time.thread_time() - start
    assert seconds < 1.0
    assert len(html.encode()) < 200_000
    assert "Showing the first 200 of 400,000 characters of the word." in html
    assert slider["value"] == slider["maximum"] or slider["maximum"] == 1
    start = time.thread_time()
    html, _ = tokenizer_tab.replay_merge(HUGE_WORDS[kind], 1)  # a step in the middle
    assert time.thread_time() - start < 1.0 and len(html.encode()) < 200_000


def test_long_replay_draws_the_current_step_and_names_the_steps_left_out():
    # 60 steps of about 300 chips (about 28 kB of HTML each): only 3 rows fit in 80 kB
    steps = [([97] * (300 - i), None if i == 0 else (97, 97), None if i == 0 else 256, i or None) for i in range(60)]
    html = merge_steps_html(steps, lambda token_id: b"aa" if token_id == 256 else bytes([token_id]), max_html=80_000)
    assert len(html) < 80_000 + 500
    assert html.count('<tr class="step current">') == 1 and "step 59</td>" in html  # the current step is drawn
    assert "step 0</td>" in html and "step 58</td>" in html  # and the raw bytes, and the step before
    assert '<tr class="skipped"><td class="step-no">steps 1–57</td><td colspan="3">57 steps not drawn' in html
    assert "move the merge step slider" in html


@settings(max_examples=30, deadline=None)
@given(word=st.text(min_size=1, max_size=400), step=st.integers(0, 800))
def test_any_word_replays_under_the_html_bound(word, step):
    html, slider = tokenizer_tab.replay_merge(word, step)
    assert len(html.encode()) < 200_000
    assert 0 <= slider["value"] <= slider["maximum"]


@pytest.mark.app
def test_huge_word_through_the_api(client):
    start = time.perf_counter()
    html, slider = client.predict(HUGE_WORDS["letters"], api_name="/replay_word")
    assert len(html.encode()) < 200_000
    assert "Showing the first 200 of 400,000 characters of the word." in html
    assert time.perf_counter() - start < 10  # generous: the upload of 400 kB and a loaded machine


# ---------------------------------------------------------------- texts are bounded
def test_a_400000_character_text_is_cut_before_the_slow_merge_loop():
    tokenizer_tab.tokenize_text("warm up", "GPT-2")
    start = time.thread_time()
    spans, stats, parity = tokenizer_tab.tokenize_text("hi " + "a" * HUGE, "GPT-2")
    assert time.thread_time() - start < 1.0
    assert "Showing the first 100,000 of 400,003 characters of the text." in stats
    # the pre-token " aaa…" (with its space) starts at character 2
    assert "Stopped at character 202: a run of 99,998 characters with no break (one pre-token) starts at character 2." in stats
    assert stats.startswith("**52 tokens** · 202 characters")
    assert parity == "✓ identical to tiktoken (52 ids)"


def test_normal_long_text_is_cut_at_100000_characters():
    spans, stats, parity = tokenizer_tab.tokenize_text(" the quick brown fox" * 10_000, "GPT-2")  # 200,000 characters
    assert stats.startswith("**20,000 tokens** · 100,000 characters")
    assert "Showing the first 100,000 of 200,000 characters of the text." in stats
    view, summary = tokenizer_tab.training_pairs("a" * HUGE, 8, 4)
    assert "Stopped at character 200" in summary


def test_other_texts_are_cut():
    ladder = attention_tab.attention_ladder("word " * 1_000)
    assert ladder[0].startswith("Showing the first 1,000 of 5,000 characters of the text.")
    summary, _, _ = tokenizer_tab.embeddings("a" * HUGE)
    assert summary.startswith("**token embeddings (16, 16)")
    view = inside_tab.look_inside(NANO, "one two " * 2_000)
    assert "⚠ Showing the first 2,000 of 16,000 characters of the text." in view[0]


def test_texts_of_the_wrong_type_get_a_plain_message():
    with pytest.raises(ValueError, match="The sentence must be a string of characters, not int."):
        attention_tab.attention_ladder(12)
    with pytest.raises(ValueError, match="The word must be a string of characters, not list."):
        tokenizer_tab.replay_merge(["a"], 0)
    with pytest.raises(ValueError, match="The text must be a string of characters, not dict."):
        inside_tab.look_inside(NANO, {"a": 1})


# ---------------------------------------------------------------- numbers get plain messages
BAD_NUMBERS = {
    "NaN": (float("nan"), "NaN (not a number)"),
    "infinity": (float("inf"), "infinity"),
    "minus infinity": (float("-inf"), "minus infinity"),
    "huge": (10**30, "1000000000000000000000000000000"),
    "word": ("many", "'many'"),
    "list": ([3], "[3]"),
    "bool": (True, "True"),
}


@pytest.mark.parametrize("name", sorted(BAD_NUMBERS))
def test_bad_numbers_get_plain_messages_in_every_explore_handler(name):
    value, shown = BAD_NUMBERS[name]
    state = {"attn": np.zeros((2, 4, 3, 3), dtype=np.float16), "tokens": ["a", "b", "c"]}
    cases = [
        (lambda: attention_tab.attention_ladder("Hello there", dim=value),
         f"The embedding size d_in must be a whole number from 2 to 8; got {shown}."),
        (lambda: attention_tab.attention_ladder("Hello there", d_out=value),
         f"The query/key/value size d_out must be a whole number from 1 to 4; got {shown}."),
        (lambda: attention_tab.attention_ladder("Hello there", use_dropout=True, dropout_rate=value),
         f"The dropout rate must be a number from 0 to 0.9; got {shown}."),
        (lambda: tokenizer_tab.training_pairs("Hello world, this is a test", value, 2),
         f"The context length must be a whole number from 1 to 64; got {shown}."),
        (lambda: tokenizer_tab.training_pairs("Hello world, this is a test", 4, value),
         f"The stride must be a whole number from 0 to 64; got {shown}."),
        (lambda: tokenizer_tab.replay_merge("hello", value),
         f"The merge step must be a whole number from 0 to 800; got {shown}."),
        (lambda: tokenizer_tab.train_bpe(value, "The text above", "abc", None, progress=lambda *a, **k: None),
         f"The vocabulary size must be a whole number from 257 to 16,384; got {shown}."),
        (lambda: inside_tab.enlarged_head(state, value, 0), f"The layer must be a whole number from 0 to 1; got {shown}."),
        (lambda: inside_tab.enlarged_head(state, 0, value), f"The head must be a whole number from 0 to 3; got {shown}."),
    ]
    if name == "bool":  # True is refused as a number, but a checkbox must be a bool: check the switches too
        cases.append((lambda: attention_tab.attention_ladder("Hi", causal="yes"),
                      "The causal mask switch must be true or false; got 'yes'."))
    for call, message in cases:
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == message


def test_numbers_as_strings_and_floats_work_and_steps_are_clamped():
    assert attention_tab.attention_ladder("Hello there", dim="4", d_out=2.0)[0].endswith("inputs (2, 4) (one 4-number vector per token).")
    html, slider = tokenizer_tab.replay_merge("hello", "800")  # past the last step: the last step
    assert slider["value"] == 4
    state = {"attn": np.zeros((2, 4, 3, 3), dtype=np.float16), "tokens": ["a", "b", "c"]}
    assert plot_json(inside_tab.enlarged_head(state, 1.0, "3"))["data"][0]["name"] == "layer 1, head 3: weights (3, 3)"


def raw_call(app_url: str, api: str, data: list) -> str:
    """Call an endpoint the way any HTTP client can: JSON with NaN and Infinity in it (gradio_client refuses to
    send those). Returns the server's event stream as text."""
    import httpx

    body = json.dumps({"data": data}, allow_nan=True)
    with httpx.Client(base_url=app_url, timeout=60) as http:
        event_id = http.post(f"/gradio_api/call/{api}", content=body,
                             headers={"Content-Type": "application/json"}).json()["event_id"]
        return http.get(f"/gradio_api/call/{api}/{event_id}").text


@pytest.mark.app
def test_bad_numbers_through_the_api_get_the_same_plain_messages(app_url):
    cases = [
        ("attention", ["Hello", 3, 2, True, True, float("nan")], "The dropout rate must be a number from 0 to 0.9; got NaN"),
        ("attention", ["Hello", float("inf"), 2, True, False, 0.5], "d_in must be a whole number from 2 to 8; got infinity"),
        ("attention", ["Hello", 3, "two", True, False, 0.5], "d_out must be a whole number from 1 to 4; got 'two'"),
        ("attention", ["Hello", 3, 2, "no", False, 0.5], "The causal mask switch must be true or false; got 'no'"),
        ("training_pairs", ["Hello world, this is a test", 10**30, 2], "The context length must be a whole number from 1 to 64"),
        ("training_pairs", ["Hello world, this is a test", 4, float("-inf")], "got minus infinity"),
        ("replay_merge", ["hello", float("nan")], "The merge step must be a whole number from 0 to 800; got NaN"),
    ]
    for api, data, message in cases:
        stream = raw_call(app_url, api, data)
        assert "event: error" in stream and message in stream, (api, data, stream[:300])


# ---------------------------------------------------------------- the result cache
def test_cached_views_equal_fresh_ones():
    attention_tab.LADDERS.clear()
    fresh = attention_tab.attention_ladder("The cat sat on the mat", 3, 2, True, True, 0.5)
    cached = attention_tab.attention_ladder("The cat sat on the mat", 3, 2, True, True, 0.5)
    assert len(attention_tab.LADDERS) == 1
    assert [plot_json(v) if hasattr(v, "plot") else v for v in cached] == \
           [plot_json(v) if hasattr(v, "plot") else v for v in fresh]
    attention_tab.LADDERS.clear()
    again = attention_tab.attention_ladder("The cat sat on the mat", 3, 2, True, True, 0.5)
    assert [plot_json(v) if hasattr(v, "plot") else v for v in again] == \
           [plot_json(v) if hasattr(v, "plot") else v for v in fresh]  # seeded: the same after a recompute

    inside_tab.VIEWS.clear()
    first = inside_tab.look_inside(NANO, "Every effort moves you")
    second = inside_tab.look_inside(NANO, "Every effort moves you")
    assert second[1] is first[1]  # the grid's JSON comes from the cache
    inside_tab.VIEWS.clear()
    third = inside_tab.look_inside(NANO, "Every effort moves you")
    assert plot_json(third[1]) == plot_json(first[1])
    assert np.array_equal(inside_tab.inside_view(NANO, "Every effort moves you").state["attn"],
                          inside_tab.build_view(models.load_choice(NANO), "Every effort moves you", None).state["attn"])


def test_a_model_registered_again_under_the_same_name_is_not_answered_from_the_cache():
    label = "test · re-registered"
    models.register_model(label, models.random_init("nano"), models.gpt2_tokenizer(), "first")
    try:
        first = inside_tab.look_inside(label, "hello there")
        models.register_model(label, models.random_init("micro"), models.gpt2_tokenizer(), "second")
        second = inside_tab.look_inside(label, "hello there")
        assert "first" in first[0] and "second" in second[0]
    finally:
        models.MODEL_CHOICES[:] = [choice for choice in models.MODEL_CHOICES if choice.label != label]
        models._loaded.pop(label, None)


def test_cache_drops_the_least_recently_used_within_its_budget():
    cache = ResultCache(max_items=3, max_bytes=100)
    for key in "abc":
        cache.put(key, "x" * 10)
    cache.get("a")  # a is now the most recently used
    cache.put("d", "x" * 10)
    assert [key for key in "abcd" if cache.get(key) is not None] == ["a", "c", "d"]
    cache.put("e", "x" * 95)  # bytes: only e fits
    assert len(cache) == 1 and cache.total_bytes == 95
    cache.put("f", "x" * 101)  # larger than the whole budget: not kept
    assert cache.get("f") is None and cache.total_bytes == 95


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 6), st.integers(0, 60)), max_size=60))
def test_cache_matches_a_plain_lru_and_never_exceeds_its_budget(operations):
    cache, model = ResultCache(max_items=4, max_bytes=100), OrderedDict()
    for operation, key, size in operations:
        if operation == "put":
            cache.put(key, "x" * size)
            if size <= 100:
                model.pop(key, None)
                model[key] = size
                while len(model) > 4 or sum(model.values()) > 100:
                    model.popitem(last=False)
        else:
            value = cache.get(key)
            assert (value is None) == (key not in model)
            if key in model:
                model.move_to_end(key)
        assert len(cache) <= 4 and cache.total_bytes <= 100
        assert cache.total_bytes == sum(model.values())


def test_the_caches_state_their_bounds():
    assert (inside_tab.VIEWS.max_items, inside_tab.VIEWS.max_bytes) == (64, 64 * 2**20)
    assert (attention_tab.LADDERS.max_items, attention_tab.LADDERS.max_bytes) == (128, 32 * 2**20)
    inside_tab.look_inside(NANO, "Every effort moves you")
    view = inside_tab.VIEWS.get((NANO, "Every effort moves you"), owner=models.load_choice(NANO).model)
    assert 10_000 < size_in_bytes(view) < 2_000_000


# ---------------------------------------------------------------- concurrency per endpoint
def test_each_explore_endpoint_has_its_own_queue_sized_by_its_cost():
    import app

    demo = app.build_demo()
    queues = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values() if fn.api_name}
    assert queues["tokenize"] == ("tokenize", 4)
    assert queues["training_pairs"] == ("tokenize", 4)
    assert queues["replay_merge"] == queues["embeddings"] == ("token_views", 4)
    assert queues["attention"] == ("attention", 4)
    assert queues["inside"] == ("inside", 4)
    attention_triggers = [fn for fn in demo.fns.values() if fn.name == "attention"]  # named as its endpoint
    # the button, Enter, an example, one per slider (3) and the two switches together (class mode draws the ladder
    # in its own update: ui/classroom.py wire_tab_update)
    assert len(attention_triggers) == 7 and {fn.concurrency_id for fn in attention_triggers} == {"attention"}


# ---------------------------------------------------------------- the figures are still valid plotly
def causal(n: int) -> np.ndarray:
    weights = np.tril(np.random.default_rng(n).random((n, n)))
    return weights / weights.sum(axis=1, keepdims=True)


def all_figures() -> dict[str, go.Figure]:
    rng = np.random.default_rng(0)
    tokens = ["Your", " journey", " starts", " with", " one", " step"]
    masked = np.triu(np.ones((6, 6), dtype=bool), 1)
    tok, pos = rng.normal(size=(6, 48)), rng.normal(size=(6, 48))
    return {
        "panels": panels_figure([Panel("s", np.where(masked, -np.inf, causal(6)), "scores"),
                                 Panel("w", causal(6), masked=masked, dropped=masked.T)], tokens, title="t"),
        "panels in 2 columns": panels_figure([Panel(f"p{i}", causal(6)) for i in range(4)], tokens, columns=2),
        "head": head_figure(causal(6), tokens, "layer 0, head 1"),
        "grid": attention_grid_figure(np.stack([np.stack([causal(6)] * 3)] * 2), tokens, "grid"),
        "parameters": parameter_figure([("token embedding", 300), ("attention", 100)]),
        "embedding": embedding_figure(tok, pos, tokens, 32, "vectors"),
        "positions": position_norm_figure(np.abs(rng.normal(size=64)), 6),
        "embedding heatmaps": embedding_heatmaps(tok[:, :16], pos[:, :16], tok[:, :16] + pos[:, :16], tokens),
        "cosine": cosine_heatmap(np.corrcoef(tok), tokens, "cosine"),
    }


@pytest.mark.parametrize("name", sorted(all_figures()))
def test_every_figure_passes_plotlys_full_validation(name):
    figure = all_figures()[name]
    checked = go.Figure(json.loads(figure.to_json()))  # raises on any property plotly does not know
    assert len(checked.data) == len(figure.data)
    assert json.loads(figure.to_json())["layout"]["template"]["layout"]["font"]["color"] == "#2a3f5f"  # plotly's look


@pytest.mark.parametrize("rows, cols, spacing, shared", [(1, 1, None, False), (1, 3, 0.03, True), (2, 2, 0.1, False),
                                                          (1, 4, 0.06, False), (3, 2, None, False)])
def test_grid_layout_has_make_subplots_geometry(rows, cols, spacing, shared):
    titles = [f"t{i}" for i in range(rows * cols)]
    kwargs = {"horizontal_spacing": spacing} if spacing is not None else {}
    reference = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=shared, **kwargs)
    ours = grid_layout(rows, cols, titles, shared_yaxes=shared, **kwargs)
    for index in range(rows * cols):
        suffix = "" if index == 0 else str(index + 1)
        for axis in ("xaxis", "yaxis"):
            theirs = reference.layout[f"{axis}{suffix}"].to_plotly_json()
            assert ours[f"{axis}{suffix}"]["domain"] == pytest.approx(list(theirs["domain"]))
            assert {k: v for k, v in ours[f"{axis}{suffix}"].items() if k != "domain"} == \
                   {k: v for k, v in theirs.items() if k != "domain"}
    for mine, theirs in zip(ours["annotations"], reference.layout.annotations):
        theirs = theirs.to_plotly_json()
        assert mine["text"] == theirs["text"]
        assert (mine["x"], mine["y"]) == (pytest.approx(theirs["x"]), pytest.approx(theirs["y"]))


def test_inside_view_figures_have_the_expected_traces():
    *view, on_page = inside_tab.look_inside_page(NANO, "Every effort moves you forward.")
    note, grid, layer, head, head_plot, table, params_plot, memory, embed, pos = view
    assert on_page == {"model": NANO, "text": "Every effort moves you forward."}  # what the head sliders read
    n = len(inside_tab.inside_view(NANO, on_page["text"]).state["tokens"])
    grid = plot_json(grid)["data"]
    assert len(grid) == 1 and grid[0]["z"]["dtype"] == "u1" and grid[0]["z"]["shape"] == f"{2 * n + 1}, {4 * n + 3}"
    assert [trace["name"] for trace in plot_json(head_plot)["data"]] == [f"layer 1, head 0: weights ({n}, {n})", "masked"]
    assert len(plot_json(embed)["data"]) == 3 and len(plot_json(pos)["data"]) == 2
    assert plot_json(params_plot)["data"][0]["type"] == "bar"
    assert (layer["maximum"], head["maximum"]) == (1, 3)


def test_attention_figures_round_values_to_the_books_four_decimals():
    ladder = attention_tab.attention_ladder("Your journey starts with one step", 3, 2, True, False, 0.5)
    weights = plot_json(ladder[5])["data"][0]["z"]  # rung 2's first matrix
    values = [value for row in weights for value in row if value is not None]
    assert values and all(math.isclose(value, round(value, 4)) for value in values)  # small JSON, the book's digits


def test_replay_through_friendly_is_a_gradio_error_with_the_plain_message():
    with pytest.raises(Exception, match="The merge step must be a whole number from 0 to 800; got NaN"):
        friendly(tokenizer_tab.replay_merge)("hello", float("nan"))
