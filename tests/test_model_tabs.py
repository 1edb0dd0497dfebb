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
    results = []
    threads = [threading.Thread(target=lambda: results.append(models.load_choice(choice.label))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len({id(result) for result in results}) == 1
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
@pytest.mark.app
def test_attention_api_shapes_and_masks(client):
    result = client.predict(BOOK_SENTENCE, 3, 2, True, False, 0.5, api_name="/attention")
    note, table, *rungs = result
    assert note.startswith("6 tokens → inputs (6, 3) (one 3-number vector per token). These are the book's own")
    assert table["value"]["data"][1] == ["1: ' journey'", 0.55, 0.87, 0.66]  # chapter 3's inputs, row "journey"
    assert len(table["value"]["data"]) == 6
    assert table["value"]["headers"] == ["token", "dim 0", "dim 1", "dim 2"]
    simple, self_attn, causal, multi = rungs[0::2]
    assert "inputs (6, 3) · inputsᵀ (3, 6) = scores (6, 6)" in simple
    assert "queries (6, 2) · keysᵀ (2, 6) = scores (6, 6)" in self_attn
    assert "weights · values (6, 2) = context (6, 2)" in self_attn
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
def test_attention_api_dropout_no_mask_and_other_dim(client):
    result = client.predict(BOOK_SENTENCE, 5, 2, False, True, 0.5, api_name="/attention")
    assert result[0] == "6 tokens → inputs (6, 5) (one 5-number vector per token)."
    causal_text, causal_plot = result[6], result[7]
    assert causal_text.startswith("**3 · Causal attention, mask switched off**")
    assert "Dropout (training only) zeroed" in causal_text
    traces = plot_data(causal_plot)
    assert [trace.get("name") for trace in traces][-1] == "dropped"
    assert not any(trace.get("name") == "masked" for trace in traces)


@pytest.mark.app
def test_attention_api_long_and_empty_text(client):
    long_text = " ".join(["word"] * 40)
    result = client.predict(long_text, 3, 2, True, False, 0.5, api_name="/attention")
    assert result[0] == "Your text has 40 tokens; showing the first 24. 24 tokens → inputs (24, 3) (one 3-number vector per token)."
    assert len(result[1]["value"]["data"]) == 24
    with pytest.raises(AppError, match="Type some text first: the box is empty."):
        client.predict("   ", 3, 2, True, False, 0.5, api_name="/attention")


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
    page.get_by_role("tab", name="Attention").click()
    page.get_by_role("button", name="Show attention").click()
    page.wait_for_selector("text=1 · Simple attention", timeout=60_000)
    page.wait_for_selector("#attention-rung-4 .js-plotly-plot", timeout=30_000)
    assert page.locator("#attention-rung-3 .js-plotly-plot text", has_text="weights").count() >= 1


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
