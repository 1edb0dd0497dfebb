"""The Attention, Inside GPT and Generate tabs: handlers, the gradio_client API and one browser run per tab."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time

import numpy as np
import pytest
import torch
from gradio_client.exceptions import AppError

from ui import generate_tab, models
from ui.generate_tab import sampling_settings

NANO = "Random init · nano (untrained)"
GPT2_SMALL = "GPT-2 small (124M, download)"
BOOK_SENTENCE = "Your journey starts with one step"


def plot_data(plot: dict) -> list[dict]:
    """The traces of a gr.Plot value as the browser receives them."""
    return json.loads(plot["plot"])["data"]


def as_array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, or a typed array {"dtype": "f8", "bdata": base64, "shape": "6, 6"}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(size) for size in value["shape"].split(",")]) if "shape" in value else flat
    return np.array(value, dtype=float)


def finite_cells(trace: dict) -> int:
    return int(np.isfinite(as_array(trace["z"]).astype(float)).sum())


# ---------------------------------------------------------------- units
def test_sampling_settings_greedy_clamp_and_errors():
    assert sampling_settings(0.7, 0, 1.0, 100) == (0.7, None, None, [])
    temperature, top_k, top_p, notes = sampling_settings(0, 500, 0.9, 100)
    assert (temperature, top_k, top_p) == (0.0, 100, 0.9)
    assert notes[0].startswith("Temperature 0: greedy")
    assert notes[1] == "top-k 500 is more than the vocabulary (100 tokens): using 100, which keeps every token."
    with pytest.raises(ValueError, match=r"^The temperature must be a number from 0 to 2; got -1\.$"):
        sampling_settings(-1, 0, 1.0, 100)
    with pytest.raises(ValueError, match=r"^top-p \(1 = off\) must be a number from 0 to 1; got 1\.5\.$"):
        sampling_settings(1.0, 0, 1.5, 100)
    with pytest.raises(ValueError, match=r"^top-p \(1 = off\) must be more than 0"):
        sampling_settings(1.0, 0, 0.0, 100)
    with pytest.raises(ValueError, match=r"^top-k \(0 = off\) must be a whole number from 0 to 1,000,000; got -3\.$"):
        sampling_settings(1.0, -3, 1.0, 100)


def test_load_choice_builds_once_for_many_simultaneous_requests(monkeypatch):
    builds = []

    def slow_build():
        builds.append(1)
        time.sleep(0.2)
        return models.random_init("nano")

    choice = models.ModelChoice("test · counted", slow_build, "note")
    monkeypatch.setattr(models, "MODEL_CHOICES", [*models.MODEL_CHOICES, choice])
    monkeypatch.setattr(models, "LOAD_WAIT_S", 120.0)  # a busy CI machine must not turn waiting into a refusal
    results = []
    threads = [threading.Thread(target=lambda: results.append(models.load_choice(choice.label))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(results) == 8 and len({id(result) for result in results}) == 1
    assert results[0].model.training is False
    models._loaded.pop(choice.label)


def test_random_init_is_seeded():
    first, second = models.random_init("nano"), models.random_init("nano")
    assert torch.equal(first.tok_emb.weight, second.tok_emb.weight)
    assert first.cfg.vocab_size == 50257


def test_unknown_model_label_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        models.load_choice("nope")


# ---------------------------------------------------------------- Attention tab
def trace_named(plot: dict, name: str) -> dict:
    """The heatmap of one matrix of a ladder figure, found by its title (line breaks as spaces)."""
    return next(trace for trace in plot_data(plot) if trace.get("name") == name)


@pytest.mark.app
def test_attention_api_shapes_and_masks(client):
    result = client.predict(BOOK_SENTENCE, 3, 2, True, False, 0.5, api_name="/attention")
    note, table, *rungs = result
    assert len(result) == 10  # note, inputs table, then text + figure for each of the 4 rungs (scripts rely on it)
    assert note.startswith("6 tokens → inputs (6, 3) (one 3-number vector per token). These are the book's own")
    assert table["value"]["data"][1] == ["1: ' journey'", 0.55, 0.87, 0.66]  # chapter 3's inputs, row "journey"
    assert len(table["value"]["data"]) == 6
    assert table["value"]["headers"] == ["token", "dim 0", "dim 1", "dim 2"]
    simple, self_attn, causal, multi = rungs[0::2]
    assert "inputs (6, 3) · inputsᵀ (3, 6) = scores (6, 6)" in simple
    assert "queries (6, 2) · keysᵀ (2, 6) = scores (6, 6)" in self_attn
    assert "weights · values (6, 2) = context (6, 2)" in self_attn
    assert "Why are the weights so even (all near 1/6 = 0.17)?" in self_attn  # the lesson of untrained W
    assert "the 15 cells above the diagonal set to -∞" in causal
    assert "context (6, 4) = (tokens, 2 heads × 2)" in multi
    causal_traces = plot_data(rungs[5])
    masked = [trace for trace in causal_traces if trace.get("name") == "masked"]
    assert len(masked) == 2  # on the scores and on the weights
    assert all(finite_cells(trace) == 15 for trace in masked)
    assert not any(trace.get("name") == "dropped" for trace in causal_traces)
    multi_traces = plot_data(rungs[7])
    assert sum(trace.get("name") == "masked" for trace in multi_traces) == 4  # 2 heads x (scores, weights)


@pytest.mark.app
def test_attention_api_draws_every_matrix_with_the_books_numbers(client):
    _, _, _, simple, _, self_attn, _, causal, _, multi = client.predict(
        BOOK_SENTENCE, 3, 2, True, False, 0.5, api_name="/attention")
    # rung 1: inputs, scores, weights, context; the weights of "journey" and the context of "Your" as printed
    assert [trace["name"] for trace in plot_data(simple)] == [
        "inputs (token vectors)", "scores = inputs · inputsᵀ", "weights = softmax(scores)", "context = weights · inputs"]
    weights = trace_named(simple, "weights = softmax(scores)")
    assert np.allclose(as_array(weights["z"])[1], [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581], atol=1e-4)
    assert weights["text"][1] == ["0.1385", "0.2379", "0.2333", "0.1240", "0.1082", "0.1581"]  # in the cells
    assert weights["y"][1] == "1:·journey" and weights["x"] == weights["y"]
    assert np.allclose(as_array(trace_named(simple, "context = weights · inputs")["z"])[0], [0.4421, 0.5931, 0.5790],
                       atol=1e-4)
    # rung 2 (seed 789): W_query, W_key, W_value, the queries, keys and values, then scores, weights and context
    assert [trace["name"] for trace in plot_data(self_attn)] == [
        "W_query", "W_key", "W_value", "queries = inputs · W_query", "keys = inputs · W_key",
        "values = inputs · W_value", "scores = queries · keysᵀ", "weights = softmax(scores / √2)",
        "context = weights · values"]
    w_query = trace_named(self_attn, "W_query")
    assert as_array(w_query["z"]).shape == (3, 2) and w_query["y"] == ["dim 0", "dim 1", "dim 2"]
    context = trace_named(self_attn, "context = weights · values")
    assert np.allclose(as_array(context["z"])[0], [-0.0739, 0.0713], atol=1e-4)
    assert context["text"][0] == ["-0.0739", "0.0713"]
    # rung 3 (seed 123, the book's CausalAttention): its own W matrices, masked scores, weights, context
    names = [trace["name"] for trace in plot_data(causal)]
    assert names[:6] == ["W_query", "W_key", "W_value", "queries = inputs · W_query", "keys = inputs · W_key",
                         "values = inputs · W_value"]
    assert names[6:] == ["masked scores (future = −∞)", "masked", "weights = softmax(… / √2)", "masked",
                         "context = weights · values"]
    assert np.allclose(as_array(trace_named(causal, "context = weights · values")["z"])[0], [-0.4519, 0.2216],
                       atol=1e-4)
    masked_scores = [trace for trace in plot_data(causal) if trace["name"] == "masked"][0]
    assert masked_scores["text"][0][1] == "−∞"
    # rung 4: per head scores, weights, context; then both heads' context side by side (the book's wrapper)
    joined = trace_named(multi, "context = [head 0 | head 1]")
    assert np.allclose(as_array(joined["z"])[0], [-0.4519, 0.2216, 0.4772, 0.1063], atol=1e-4)
    assert joined["x"] == ["h0 dim 0", "h0 dim 1", "h1 dim 0", "h1 dim 1"]
    # readable on a projector in both themes: 14 px numbers, 16 px titles, transparent backgrounds
    for plot in (simple, self_attn, causal, multi):
        figure = json.loads(plot["plot"])
        assert figure["layout"]["paper_bgcolor"] == figure["layout"]["plot_bgcolor"] == "rgba(0,0,0,0)"
        assert all(annotation["font"]["size"] >= 16 for annotation in figure["layout"]["annotations"])
        assert all(trace["textfont"]["size"] >= 14 for trace in figure["data"] if "text" in trace)
        assert figure["layout"]["height"] < 1200  # fits its content: no huge empty frame


@pytest.mark.app
def test_attention_api_dropout_no_mask_and_other_dim(client):
    result = client.predict(BOOK_SENTENCE, 5, 2, False, True, 0.5, api_name="/attention")
    assert result[0] == "6 tokens → inputs (6, 5) (one 5-number vector per token)."
    causal_text, causal_plot = result[6], result[7]
    assert causal_text.startswith("**3 · Causal attention, mask switched off**")
    assert "Dropout (training only) zeroed" in causal_text
    names = [trace.get("name") for trace in plot_data(causal_plot)]
    assert names == ["scores (mask off)", "weights = softmax(… / √2)", "after dropout p=0.5 (kept × 2.00)",
                     "dropped", "context = dropped weights · values"]
    assert "masked" not in names
    inputs = trace_named(result[3], "inputs (token vectors)")
    assert inputs["x"] == ["dim 0", "dim 1", "dim 2", "dim 3", "dim 4"]


@pytest.mark.app
def test_attention_api_long_and_empty_text(client):
    long_text = " ".join(["word"] * 40)
    result = client.predict(long_text, 3, 2, True, False, 0.5, api_name="/attention")
    assert result[0] == "Your text has 40 tokens; showing the first 24. 24 tokens → inputs (24, 3) (one 3-number vector per token)."
    assert len(result[1]["value"]["data"]) == 24
    weights = trace_named(result[3], "weights = softmax(scores)")
    assert as_array(weights["z"]).shape == (24, 24) and "text" not in weights  # too small for numbers: hover
    with pytest.raises(AppError, match="Type some text first: the box is empty."):
        client.predict("   ", 3, 2, True, False, 0.5, api_name="/attention")


def test_attention_tab_is_drawn_when_it_opens_and_redraws_on_every_control():
    import gradio as gr

    from ui import attention_tab

    attention_tab.gpt2_tokenizer()  # loaded once per server (the Tokenizer tab loads it first)
    attention_tab.LADDERS.clear()
    start = time.perf_counter()
    with gr.Blocks() as demo:
        attention_tab.build_tab()
    print(f"attention tab built in {time.perf_counter() - start:.2f} s")
    blocks = list(demo.blocks.values())
    plots = [block for block in blocks if isinstance(block, gr.Plot)]
    assert [plot.elem_id for plot in plots] == [f"attention-rung-{rung}" for rung in range(1, 5)]
    assert all(plot.value is not None for plot in plots)  # drawn on opening: no empty frames
    assert "weights = softmax(scores)" in plots[0].value["plot"]
    table = next(block for block in blocks if isinstance(block, gr.Dataframe))
    assert table.value["headers"] == ["token", "dim 0", "dim 1", "dim 2"] and len(table.value["data"]) == 6
    notes = [block.value for block in blocks if isinstance(block, gr.Markdown)]
    assert any(note.startswith("6 tokens → inputs (6, 3)") for note in notes)
    assert any(note.startswith("**1 · Simple attention**") for note in notes)
    text = next(block for block in blocks if isinstance(block, gr.Textbox))
    assert text.lines == 1  # Enter submits
    examples = next(block for block in blocks if isinstance(block, gr.Dataset))
    assert examples.samples[0] == [attention_tab.DEFAULT_TEXT] and len(examples.samples) >= 3

    ladder = [fn for fn in demo.fns.values() if fn.name == "attention"]  # the handler is named as its endpoint
    assert {fn.concurrency_id for fn in ladder} == {"attention"}
    assert [fn.api_name for fn in ladder if fn.api_visibility == "public"] == ["attention"]  # one endpoint
    events = {(target, event) for fn in ladder for target, event in fn.targets}
    by_label = {block.label: block._id for block in blocks if getattr(block, "label", None)}
    assert (text._id, "submit") in events
    for label in ("embedding size d_in (the book uses 3)", "query/key/value size d_out (the book uses 2)",
                  "dropout rate"):  # the mouse sends `release`, the arrow keys and typing `input`
        assert {(by_label[label], "input"), (by_label[label], "release")} <= events
    for label in ("causal mask (hide the future)", "dropout (as in training)"):
        assert (by_label[label], "input") in events
    assert any(fn.trigger_after is not None for fn in ladder)  # a clicked example is drawn when it is loaded


def test_attention_ladders_draw_in_well_under_a_second():
    from ui import attention_tab

    attention_tab.attention_ladder("warm up")
    sentences = [attention_tab.DEFAULT_TEXT, " ".join(f"w{i}" for i in range(30))]  # the book's, then 24 tokens
    for sentence in sentences:
        times = []
        for _ in range(3):
            attention_tab.LADDERS.clear()
            start = time.perf_counter()
            attention_tab.attention_ladder(sentence, 8, 4, True, True, 0.5)
            times.append(time.perf_counter() - start)
        print(f"{sentence[:20]!r}: {min(times) * 1000:.0f} ms")
        assert min(times) < 1.0


# ---------------------------------------------------------------- Inside GPT tab
@pytest.mark.app
def test_inside_api_nano(client):
    text = "Every effort moves you forward."
    n_tokens = len(models.gpt2_tokenizer().encode(text))
    note, grid, layer, head, head_plot, params, params_plot, memory, embed, pos = client.predict(
        NANO, text, api_name="/inside")
    assert f"{n_tokens} tokens · 2 layers × 4 heads · captured attention weights (2, 4, {n_tokens}, {n_tokens})" in note
    assert (layer["maximum"], head["maximum"]) == (1, 3)
    z = plot_data(grid)[0]["z"]
    assert z["dtype"] == "u1"
    assert as_array(z).shape == (2 * n_tokens + 1, 4 * n_tokens + 3)
    rows = params["value"]["data"] if "value" in params else params["data"]
    counts = {name: int(count.replace(",", "")) for name, count, _ in rows}
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert counts["total"] == models.load_choice(NANO).model.num_parameters()
    assert "**Using the model (float32 weights)**" in memory
    head_traces = plot_data(head_plot)
    assert head_traces[1]["name"] == "masked"
    assert as_array(plot_data(pos)[1]["x"]).tolist() == list(range(n_tokens))


@pytest.mark.app
def test_inside_api_truncates_long_text(client):
    result = client.predict(NANO, " ".join(["one", "two"] * 60), api_name="/inside")
    assert "⚠ Your text has 120 tokens; showing the first 64." in result[0]
    assert "(2, 4, 64, 64)" in result[0]


@pytest.mark.app
def test_inside_gpt2_offline_is_a_quick_friendly_error(client):
    start = time.perf_counter()
    with pytest.raises(AppError, match=r"GPT-2 weights need the internet .* The other models still work"):
        client.predict(GPT2_SMALL, "hello", api_name="/inside")
    assert time.perf_counter() - start < 20


def test_inside_weight_tying_is_explained_in_the_parameter_table():
    from ui import inside_tab

    facts = inside_tab.model_facts(models.load_choice(models.DEFAULT_CHOICE))  # tie_weights: the head is tok_emb
    head_row = next(row for row in facts.table if row[0] == "output head")
    assert head_row == ["output head", "0", "shared with the token embedding (weight tying)"]
    bars = plot_data({"plot": facts.parameters.plot})[0]
    assert bars["text"][bars["y"].index("output head")] == "0: uses the token embedding's weights"


def test_inside_tab_opens_drawn_with_tokens_written_as_in_the_tokenizer_tab():
    import gradio as gr

    from ui import inside_tab

    with gr.Blocks() as demo:
        inside_tab.build_tab(models.model_picker())
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    assert by_id["inside-grid"].value is not None and by_id["inside-head"].value is not None
    rows = by_id["inside-params"].value["data"]
    assert rows[-1][0] == "total"
    view = inside_tab.inside_view(models.DEFAULT_CHOICE, inside_tab.DEFAULT_TEXT)
    assert by_id["inside-layer"].value == view.n_layers - 1 and by_id["inside-layer"].maximum == view.n_layers - 1
    assert any(token.startswith("·") for token in view.state["tokens"]) and not any(
        " " in token for token in view.state["tokens"])
    # The sliders answer the arrow keys (`input`) as well as the mouse (`release`); Enter in the text looks inside.
    for slider in (by_id["inside-layer"], by_id["inside-head-slider"], by_id["inside-lens-last"],
                   by_id["inside-ko-layer"], by_id["inside-ko-head"]):
        events = {event for fn in demo.fns.values() for target, event in fn.targets if target == slider._id}
        assert {"input", "release"} <= events
    assert by_id["inside-text"].lines == 1
    # The logit lens and the knock-out are drawn too: a row per layer, the intact model's 10 bars.
    assert json.loads(by_id["inside-lens"].value["plot"])["data"][0]["y"][-1] == f"after layer {view.n_layers - 1} (output)"
    assert len(json.loads(by_id["inside-ko-plot"].value["plot"])["data"][0]["y"]) == 10
    assert (by_id["inside-ko-layer"].maximum, by_id["inside-ko-head"].maximum) == (view.n_layers - 1, view.n_heads - 1)
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"inside", "inside_lens", "inside_knockout"} <= api_names


def test_inside_enlarged_head_is_any_layer_and_head_and_says_which():
    from ui import inside_tab

    view = inside_tab.inside_view(NANO, "Every effort moves you")  # 2 layers x 4 heads
    assert "layer 1, head 3" in inside_tab.enlarged_head(view.state, 1, 3).plot
    assert "layer 0, head 0" in inside_tab.enlarged_head(view.state, "0", None).plot  # as a key press sends them
    with pytest.raises(ValueError, match="The layer must be a whole number from 0 to 1; got 12"):
        inside_tab.enlarged_head(view.state, 12, 0)


def test_the_head_sliders_read_the_view_the_page_shows():
    from ui import inside_tab

    # the page keeps only which model and text it shows; the weights come from the view cache (or the model again)
    on_page = inside_tab.shown(NANO, "Every effort moves you")
    view = inside_tab.inside_view(NANO, "Every effort moves you")
    assert inside_tab.shown_head(on_page, 1, 3).plot == inside_tab.enlarged_head(view.state, 1, 3).plot
    inside_tab.VIEWS.clear()  # dropped from the cache: drawn again, the same
    assert inside_tab.shown_head(on_page, 1, 3).plot == inside_tab.enlarged_head(view.state, 1, 3).plot
    for bad in (None, {}, {"model": NANO}, {"model": 3, "text": "hi"}, ["nano", "hi"]):
        with pytest.raises(ValueError, match="Press 'Look inside' first"):
            inside_tab.shown_head(bad, 0, 0)
    with pytest.raises(ValueError, match="The head must be a whole number from 0 to 3; got 9"):
        inside_tab.shown_head(on_page, 0, 9)
    with pytest.raises(ValueError, match="Unknown model 'no such model'. Choose one of"):  # a page can send anything
        inside_tab.shown_head({"model": "no such model", "text": "hi"}, 0, 0)


@pytest.mark.app
def test_inside_lens_api_has_a_row_per_layer_and_the_last_16_tokens(client):
    text = " ".join(["one", "two"] * 12)  # 24 tokens
    plot = client.predict(NANO, text, None, api_name="/inside_lens")
    heatmap = plot_data(plot)[0]
    assert heatmap["y"] == ["embeddings", "after layer 0", "after layer 1 (output)"]  # n_layers + 1 rows
    assert len(heatmap["x"]) == 16 and heatmap["x"][0] == "8:·one" and heatmap["x"][-1] == "23:·two"
    assert np.array(heatmap["z"], dtype=float).shape == (3, 16)
    first = plot_data(client.predict(NANO, text, 3, api_name="/inside_lens"))[0]
    assert first["x"] == ["0:one", "1:·two", "2:·one", "3:·two"]
    with pytest.raises(AppError, match="The last token shown must be a whole number from 0 to 63; got 100"):
        client.predict(NANO, text, 100, api_name="/inside_lens")


def test_inside_lens_last_row_is_the_models_prediction():
    from ui import inside_tab

    loaded = models.load_choice(models.DEFAULT_CHOICE)
    view = inside_tab.lens_view(models.DEFAULT_CHOICE, inside_tab.DEFAULT_TEXT)
    ids = loaded.tokenizer.encode(inside_tab.DEFAULT_TEXT)
    with torch.no_grad():
        best = loaded.model(torch.tensor([ids]))[0].argmax(dim=-1).tolist()  # (T,)
    assert [at_position[0] for at_position in view.top_tokens[-1]] == [loaded.tokenizer.decode([i]) for i in best]
    assert view.top_probs.shape == (loaded.cfg.n_layers + 1, len(ids), inside_tab.LENS_TOP_K)
    with pytest.raises(ValueError, match="The last token shown must be a whole number from 0 to 63; got NaN"):
        inside_tab.show_lens(models.DEFAULT_CHOICE, "hello", float("nan"))


@pytest.mark.app
def test_inside_knockout_api_changes_the_bundled_models_probabilities(client):
    from ui import inside_tab

    text = inside_tab.DEFAULT_TEXT
    note, plot = client.predict(models.DEFAULT_CHOICE, text, 3, 3, "one head", api_name="/inside_knockout")
    intact, knocked = plot_data(plot)
    assert (intact["name"], knocked["name"]) == ("intact model", "knocked out")
    before, after = np.array(intact["x"], dtype=float), np.array(knocked["x"], dtype=float)
    assert len(before) == 10 and abs(before - after).max() > 0.05  # layer 3, head 3: -13 points on the top guess
    assert knocked["text"][0].endswith("pts)")
    assert note.startswith("**Knocked out: layer 3, head 3 (its output set to zero)**")
    note, plot = client.predict(models.DEFAULT_CHOICE, text, 3, 0, "nothing (the intact model)",
                                api_name="/inside_knockout")
    assert note.startswith("**The intact model**") and len(plot_data(plot)) == 1
    assert np.array(plot_data(plot)[0]["x"], dtype=float) == pytest.approx(before)
    with pytest.raises(AppError, match="The head must be a whole number from 0 to 3; got 4"):
        client.predict(models.DEFAULT_CHOICE, text, 0, 4, "one head", api_name="/inside_knockout")
    with pytest.raises(AppError, match="The layer must be a whole number from 0 to 1; got 2"):
        client.predict(NANO, text, 2, 0, "the whole layer", api_name="/inside_knockout")


def test_inside_knockout_whole_layer_and_defaults():
    from ui import inside_tab

    note, plot = inside_tab.knockout_view()  # every parameter has a working default: layer 0, head 0
    assert note.startswith("**Knocked out: layer 0, head 0")
    note, _ = inside_tab.knockout_view(models.DEFAULT_CHOICE, inside_tab.DEFAULT_TEXT, "3", None, "the whole layer")
    assert note.startswith("**Knocked out: the whole of layer 3 (it passes its input on unchanged)**")
    assert "New in the top 10 without it:" in note
    with pytest.raises(ValueError, match="What to knock out must be one of: 'one head', 'the whole layer'"):
        inside_tab.knockout_view(models.DEFAULT_CHOICE, "hi", 0, 0, "everything")


# ---------------------------------------------------------------- Generate tab
@pytest.mark.app
def test_generate_api_greedy_streams_the_same_tokens_as_generate(client):
    prompt = "Every effort moves you"
    job = client.submit(NANO, prompt, 5, 0.0, 0, 1.0, 123, api_name="/generate")
    job.result()
    outputs = job.outputs()
    # The first token, then the final update with the chart: a fast model's other tokens arrive with it
    # (the tab sends the text at most every STREAM_EVERY_S seconds).
    assert len(outputs) == 2
    final_html = outputs[-1][0]
    assert final_html.count('class="tok"') == 5
    loaded = models.load_choice(NANO)
    ids = loaded.tokenizer.encode(prompt)
    expected = generate_tab.generate(loaded.model, torch.tensor(ids), 5)[len(ids):].tolist()
    streamed = re.findall(r'class="tok"[^>]*>(.*?)</span>', final_html)
    assert streamed == [html.escape(loaded.tokenizer.decode([token_id])) for token_id in expected]
    status = outputs[-1][2]
    assert "· greedy ·" in status
    assert "Temperature 0: greedy decoding" in status
    assert "Generated 5 tokens." in status
    assert "tokens/s" not in status  # the KV-cache speed test runs only on request (/generate_speed)
    assert outputs[-1][3]["maximum"] == 5
    assert outputs[-1][4] == loaded.tokenizer.decode(expected)  # the generated text, for API clients
    bars = plot_data(outputs[-1][1])[0]
    assert len(bars["y"]) == 10


@pytest.mark.app
def test_generate_api_errors_and_notes(client):
    with pytest.raises(AppError, match=r"top-p \(1 = off\) must be a number from 0 to 1; got 1\.5\."):
        client.predict(NANO, "Hello", 3, 1.0, 0, 1.5, 1, api_name="/generate")
    with pytest.raises(AppError, match="Type a prompt first: the box is empty."):
        client.predict(NANO, "", 3, 1.0, 0, 1.0, 1, api_name="/generate")
    result = client.predict(NANO, "Hello", 2, 1.0, 100_000, 1.0, 1, api_name="/generate")
    assert "top-k 100,000 is more than the vocabulary (50,257 tokens): using 50,257" in result[2]
    assert "Generated 2 tokens." in result[2]


@pytest.mark.app
def test_generate_gpt2_offline_is_a_friendly_error(client):
    with pytest.raises(AppError, match="GPT-2 weights need the internet"):
        client.predict(GPT2_SMALL, "Hello", 3, 1.0, 0, 1.0, 1, api_name="/generate")


# ---------------------------------------------------------------- one browser run per tab
@pytest.mark.browser
def test_browser_attention_tab(page):
    page.get_by_role("tab", name="Attention").click()  # drawn when it opens: no button to press
    page.wait_for_selector("text=1 · Simple attention", timeout=60_000)
    page.wait_for_selector("#attention-rung-4 .js-plotly-plot", timeout=30_000)
    assert page.locator("#attention-rung-3 .js-plotly-plot text", has_text="weights").count() >= 1
    assert page.locator("#attention-rung-1 .js-plotly-plot text", has_text="0.1385").count() >= 1  # the book's


@pytest.mark.browser
def test_browser_inside_tab(page):
    page.get_by_role("tab", name="Inside GPT").click()
    page.get_by_role("button", name="Look inside").click()
    page.wait_for_selector("text=captured attention weights", timeout=60_000)
    page.wait_for_selector("#inside-grid .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#inside-head .js-plotly-plot", timeout=30_000)
    assert page.locator("#inside-grid .js-plotly-plot text", has_text="layer 1").count() >= 1


@pytest.mark.browser
def test_browser_generate_tab(page):
    page.get_by_role("tab", name="Generate").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_selector(".lab-generation span.tok", timeout=60_000)
    page.wait_for_selector("#generate-candidates .js-plotly-plot", timeout=60_000)
    page.wait_for_selector("text=Generated 30 tokens.", timeout=120_000)
    assert page.locator(".lab-generation span.tok").count() == 30


def test_inside_view_of_a_model_without_position_embeddings():
    from gpt_core.model import GPTConfig, GPTModel
    from ui import inside_tab

    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=300, context_length=16, emb_dim=32, n_heads=2, n_layers=1,
                               pos_embedding=False)).eval()
    tok, pos, norms = inside_tab.embeddings(model, [1, 2, 3])
    assert tok.shape == (3, 32) and pos.shape == (3, 32) and not pos.any()
    assert norms.shape == (16,) and float(norms.sum()) == 0.0
