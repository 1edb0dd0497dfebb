"""The Generate tab under a class: the stream sends text only and draws one chart at the end, the KV-cache
speed test runs only on request, and every input gets a plain message when it cannot be used."""

from __future__ import annotations

import html
import inspect
import json
import math
import re

import gradio as gr
import httpx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.tokenizer import ENDOFTEXT
from ui import generate_tab, models
from ui.common import friendly
from ui.generate_tab import MAX_SEED, prepare, run_generation, sampling_settings, show_step
from visualizations.attention import PlainFigure
from visualizations.generation import CHOSEN_COLOR

BUNDLED = models.DEFAULT_CHOICE  # 4,096-token vocabulary: quick on a CPU
NANO = "Random init · nano (untrained)"  # GPT-2's tokenizer
PROMPT = "To be, or not to be"
N_TOKENS = 12
SPEED_LINE = re.compile(r"with the KV cache \*\*[\d,]+ tokens/s\*\*, without \*\*[\d,]+ tokens/s\*\*")


@pytest.fixture(scope="module")
def greedy_run() -> list[tuple]:
    """Every update of one greedy /generate of N_TOKENS tokens, with an update after every token."""
    every = generate_tab.STREAM_EVERY_S
    generate_tab.STREAM_EVERY_S = 0.0
    try:
        return list(run_generation(BUNDLED, PROMPT, N_TOKENS, 0.0, 0, 1.0, 1))
    finally:
        generate_tab.STREAM_EVERY_S = every


def test_a_fast_model_sends_its_tokens_in_few_updates(monkeypatch):
    monkeypatch.setattr(generate_tab, "STREAM_EVERY_S", 60.0)  # far longer than the run
    updates = list(run_generation(BUNDLED, PROMPT, N_TOKENS, 0.0, 0, 1.0, 1))
    assert len(updates) == 2  # the first token (it clears the last run), then the final update
    assert updates[0][0].count('class="tok"') == 1 and updates[-1][0].count('class="tok"') == N_TOKENS


def error_message(handler, *args) -> str:
    """The message the student sees when the handler refuses its inputs."""
    with pytest.raises(gr.Error) as refused:
        result = friendly(handler)(*args)
        if inspect.isgenerator(result):
            next(result)  # a generator checks its inputs before its first update
    return refused.value.message


# ---------------------------------------------------------------- the stream
def test_the_stream_sends_no_chart_before_the_last_update(greedy_run):
    assert len(greedy_run) == N_TOKENS + 1  # one update per token, then the final one
    figures = [index for index, outputs in enumerate(greedy_run) for value in outputs
               if isinstance(value, PlainFigure)]
    assert figures == [N_TOKENS]  # one chart, in the last update
    assert [outputs[0].count('class="tok"') for outputs in greedy_run] == [*range(1, N_TOKENS + 1), N_TOKENS]


def test_while_streaming_only_the_text_changes(greedy_run):
    first = greedy_run[0]
    assert first[1] is None and first[4] is None and first[5] == ""  # the last run's chart, steps and text go
    assert "Generating 12 tokens…" in first[2]
    assert first[3]["interactive"] is False  # the step slider waits for the end
    for previous, outputs in zip(greedy_run[:-2], greedy_run[1:-1]):
        assert outputs[0].startswith(previous[0])  # one span appended: Gradio sends only that span
        assert outputs[1:] == (None, first[2], 1, None, "", None)  # unchanged, so Gradio sends nothing for them
    assert [outputs[0].count("outline") for outputs in greedy_run] == [0] * N_TOKENS + [1]


def test_the_final_chart_is_the_last_step_and_the_slider_redraws_it(greedy_run):
    text_html, figure, status, slider, run, text, result = greedy_run[-1]
    assert figure.layout.title.text.startswith(f"step {N_TOKENS}: ")
    assert result["text"] == text and len(result["new_token_ids"]) == N_TOKENS
    assert figure.data[0].marker.color[0] == CHOSEN_COLOR  # greedy: the chosen token is the most likely one
    assert (slider["value"], slider["maximum"], slider["interactive"]) == (N_TOKENS, N_TOKENS, True)
    assert len(run["steps"]) == N_TOKENS
    again_html, again_figure = show_step(N_TOKENS, run)
    assert again_html == text_html and json.loads(again_figure.to_json()) == json.loads(figure.to_json())
    step_html, step_figure = show_step(3, run)
    assert step_figure.layout.title.text.startswith("step 3: ")
    assert re.search(r'title="step 3: [^"]*" style="[^"]*outline', step_html)


def test_the_final_update_holds_the_generated_text(greedy_run):
    loaded = models.load_choice(BUNDLED)
    ids = loaded.tokenizer.encode(PROMPT)
    expected = generate_tab.generate(loaded.model, torch.tensor(ids), N_TOKENS)[len(ids):].tolist()
    assert greedy_run[-1][5] == loaded.tokenizer.decode(expected)
    assert "Generated 12 tokens." in greedy_run[-1][2]


def test_generate_does_not_measure_the_kv_cache_speed(monkeypatch):
    def no_speed_test(*args, **kwargs):
        raise AssertionError("/generate ran the speed test")

    monkeypatch.setattr(generate_tab, "measure_speed", no_speed_test)
    monkeypatch.setattr(generate_tab, "time_kv_cache", no_speed_test)
    outputs = list(run_generation(BUNDLED, PROMPT, 3, 0.8, 40, 0.9, 7))
    assert "tokens/s" not in outputs[-1][2]


def test_sampling_with_a_seed_is_repeatable():
    first = list(run_generation(BUNDLED, PROMPT, 8, 1.2, 40, 0.95, 99))[-1][5]
    second = list(run_generation(BUNDLED, PROMPT, 8, 1.2, 40, 0.95, 99))[-1][5]
    assert first == second


# ---------------------------------------------------------------- <|endoftext|> in a prompt
@pytest.mark.parametrize(("choice", "end_of_text_id"), [(NANO, 50256), (BUNDLED, 4095)])
def test_endoftext_typed_in_a_prompt_is_the_end_of_text_token(choice, end_of_text_id):
    request = prepare(choice, f"The end.{ENDOFTEXT}A new start", 3, 0.0, 0, 1.0, 1)
    assert request.ids.count(end_of_text_id) == 1
    assert request.notes[0] == (f"`{ENDOFTEXT}` in your prompt was read as the end-of-text token "
                                f"(id {end_of_text_id}), the marker between two documents in the training text.")
    assert not any(ENDOFTEXT in note for note in prepare(choice, "No marker here", 3, 0.0, 0, 1.0, 1).notes)


def test_endoftext_note_reaches_the_status():
    status = list(run_generation(NANO, f"Hello{ENDOFTEXT}", 2, 0.0, 0, 1.0, 1))[-1][2]
    assert "read as the end-of-text token (id 50256)" in status


# ---------------------------------------------------------------- plain messages for every input
HUGE = 10**30
BAD_INPUTS = [  # (which input, value, the message)
    ("temperature", float("nan"), "The temperature must be a number from 0 to 2; got NaN (not a number)."),
    ("temperature", float("inf"), "The temperature must be a number from 0 to 2; got infinity."),
    ("temperature", -math.inf, "The temperature must be a number from 0 to 2; got minus infinity."),
    ("temperature", -0.5, "The temperature must be a number from 0 to 2; got -0.5."),
    ("temperature", "warm", "The temperature must be a number from 0 to 2; got 'warm'."),
    ("temperature", [1], "The temperature must be a number from 0 to 2; got [1]."),
    ("max_new_tokens", float("nan"), "The number of new tokens must be a whole number from 1 to 200; got NaN (not a number)."),
    ("max_new_tokens", HUGE, f"The number of new tokens must be a whole number from 1 to 200; got {HUGE}."),
    ("max_new_tokens", 2.5, "The number of new tokens must be a whole number from 1 to 200; got 2.5."),
    ("max_new_tokens", 0, "The number of new tokens must be a whole number from 1 to 200; got 0."),
    ("top_k", float("inf"), "top-k (0 = off) must be a whole number from 0 to 1,000,000; got infinity."),
    ("top_k", HUGE, f"top-k (0 = off) must be a whole number from 0 to 1,000,000; got {HUGE}."),
    ("top_k", True, "top-k (0 = off) must be a whole number from 0 to 1,000,000; got True."),
    ("top_p", float("nan"), "top-p (1 = off) must be a number from 0 to 1; got NaN (not a number)."),
    ("top_p", 1.5, "top-p (1 = off) must be a number from 0 to 1; got 1.5."),
    ("top_p", 0, "top-p (1 = off) must be more than 0: it is the share of the probability to keep. Use 1 to switch it off."),
    ("seed", float("nan"), "The seed must be a whole number from 0 to 4,294,967,295; got NaN (not a number)."),
    ("seed", HUGE, f"The seed must be a whole number from 0 to 4,294,967,295; got {HUGE}."),
    ("seed", -1, "The seed must be a whole number from 0 to 4,294,967,295; got -1."),
    ("seed", {"a": 1}, "The seed must be a whole number from 0 to 4,294,967,295; got {'a': 1}."),
    ("prompt", 123, "The prompt must be text; got 123."),
    ("prompt", "   ", "Type a prompt first: the box is empty."),
    ("choice", "No such model", None),  # the message names the model and lists the others
]
GOOD_INPUTS = {"choice": BUNDLED, "prompt": PROMPT, "max_new_tokens": 3, "temperature": 0.8, "top_k": 40,
               "top_p": 1.0, "seed": 1}


@pytest.mark.parametrize(("name", "value", "message"), BAD_INPUTS, ids=[f"{n}={v!r}" for n, v, _ in BAD_INPUTS])
def test_a_bad_input_gets_a_plain_message(name, value, message):
    shown = error_message(run_generation, *{**GOOD_INPUTS, name: value}.values())
    if message is None:
        assert "No such model" in shown and "went wrong" not in shown
    else:
        assert shown == message


def test_numbers_sent_as_text_are_read():
    request = prepare(BUNDLED, PROMPT, "4", " 0.5 ", "10", "0.9", "7")
    assert (request.max_new_tokens, request.temperature, request.top_k, request.top_p, request.seed) == (
        4, 0.5, 10, 0.9, 7)


def test_empty_number_boxes_mean_off_or_the_default():
    request = prepare(BUNDLED, PROMPT, None, 0.5, None, None, None)
    assert (request.max_new_tokens, request.top_k, request.top_p, request.seed) == (
        generate_tab.DEFAULT_MAX_NEW_TOKENS, None, None, generate_tab.DEFAULT_SEED)


def test_the_step_slider_gets_plain_messages(greedy_run):
    run = greedy_run[-1][4]
    assert error_message(show_step, float("nan"), run) == (
        "The step must be a whole number from 1 to 12; got NaN (not a number).")
    assert error_message(show_step, 13, run) == "The step must be a whole number from 1 to 12; got 13."
    assert error_message(show_step, 1, None) == "Generate some text first: there are no steps to show yet."


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0, max_value=2))
def test_any_temperature_from_0_to_2_is_accepted(temperature):
    accepted, _, _, notes = sampling_settings(temperature, 0, 1.0, 100)
    assert accepted == temperature
    assert any(note.startswith("Temperature 0: greedy") for note in notes) == (temperature == 0)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats().filter(lambda t: not 0 <= t <= 2), st.integers().filter(lambda t: not 0 <= t <= 2)))
def test_any_other_temperature_is_refused(temperature):  # NaN and the infinities included
    with pytest.raises(ValueError, match=r"^The temperature must be a number from 0 to 2; got "):
        sampling_settings(temperature, 0, 1.0, 100)


@settings(max_examples=60, deadline=None)
@given(st.integers())
def test_a_seed_is_accepted_exactly_when_it_fits_32_bits(seed):
    if 0 <= seed <= MAX_SEED:
        assert prepare(BUNDLED, PROMPT, 1, 0.8, 0, 1.0, seed).seed == seed
    else:
        with pytest.raises(ValueError, match=r"^The seed must be a whole number from 0 to 4,294,967,295; got "):
            prepare(BUNDLED, PROMPT, 1, 0.8, 0, 1.0, seed)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0, max_value=1, exclude_min=True))
def test_any_top_p_above_0_up_to_1_is_accepted(top_p):
    _, _, accepted, _ = sampling_settings(0.8, 0, top_p, 100)
    assert accepted == (top_p if top_p < 1 else None)


# ---------------------------------------------------------------- the speed test, on request
# No test here asserts a speed (timing tests are flaky on a shared machine): they check what was measured, the
# cache's filling, the bounds and the wording.
def test_the_speed_test_gives_one_paragraph_with_both_speeds():
    line = generate_tab.measure_kv_speed(BUNDLED, PROMPT)
    assert SPEED_LINE.search(line)
    assert "\n" not in line
    n_prompt = len(models.load_choice(BUNDLED).tokenizer.encode(PROMPT))
    assert f"after your {n_prompt}-token prompt" in line
    assert f"The cache filled up as it went: {n_prompt} positions after the prompt" in line


def test_the_speed_test_times_every_token_with_and_without_the_cache_and_the_cache_fills_up():
    loaded = models.load_choice(BUNDLED)
    ids = loaded.tokenizer.encode(PROMPT)
    timings = generate_tab.time_kv_cache(loaded.model, ids, 12, budget_s=60.0, runs=2)
    assert timings.runs == 2  # a generous budget: every run is done
    assert timings.prompt_tokens == len(ids)
    assert timings.lengths == [len(ids) + i for i in range(12)]  # the text the model reads for each new token
    # Each layer's cache holds the prompt after the first token, then one more position per token.
    assert timings.cache_positions == [len(ids) + i for i in range(12)]
    cfg = loaded.cfg
    head_dim = cfg.emb_dim // cfg.n_heads
    assert timings.cache_bytes == cfg.n_layers * 2 * cfg.n_heads * (len(ids) + 11) * head_dim * 4  # float32
    assert len(timings.cached_s) == len(timings.uncached_s) == 12
    assert all(t > 0 for t in timings.cached_s + timings.uncached_s)


def test_the_speed_test_stays_within_its_budget():
    loaded = models.load_choice(BUNDLED)
    ids = loaded.tokenizer.encode(PROMPT)
    timings = generate_tab.time_kv_cache(loaded.model, ids, 64, budget_s=0.0)  # spent at once
    assert timings.runs == 1 and len(timings.lengths) == 1  # one token, one run, then it stops
    assert 64 <= generate_tab.SPEED_TOKENS <= 128 and generate_tab.SPEED_BUDGET_S <= 2  # a shared server


def test_the_speed_test_uses_at_most_the_room_left_in_the_context_window():
    loaded = models.load_choice(BUNDLED)
    long_prompt = " ".join(["word"] * 400)
    _, timings = generate_tab.kv_speed_test(BUNDLED, long_prompt)
    assert timings["lengths"][-1] < loaded.cfg.context_length  # never past the window: the cache would not fit
    assert len(timings["lengths"]) <= generate_tab.SPEED_TOKENS


def test_the_book_layer_alone_keeps_no_cache_and_says_so():
    from gpt_core.model import GPTConfig, GPTModel

    torch.manual_seed(0)
    plain = GPTModel(GPTConfig(vocab_size=50, context_length=16, emb_dim=16, n_heads=2, n_layers=1)).eval()
    line, timings = generate_tab.measure_speed(plain, torch.tensor([1, 2, 3]), 4, "plain")
    assert timings.cache_positions == [] and timings.cache_bytes == 0
    assert "keeps no KV cache" in line and "The cache filled up" not in line


def test_a_ratio_near_1_never_claims_a_speed_up():
    timings = generate_tab.KVTimings(5, [5, 6, 7], [0.010, 0.010, 0.010], [0.009, 0.010, 0.011], [5, 6, 7], 3, 1024)
    line = generate_tab.speed_line(timings, "m")
    assert "faster" not in line and "saved little (1.00×)" in line
    timings.uncached_s = [0.030, 0.040, 0.050]
    assert "**4.0× faster**" in generate_tab.speed_line(timings, "m")


def test_the_speed_plot_shows_both_curves_and_the_cache():
    _, timings = generate_tab.kv_speed_test(BUNDLED, PROMPT)
    update = generate_tab.speed_plot(timings)
    assert update["visible"] is True
    figure = update["value"]
    names = [trace["name"] for trace in figure.data]
    assert names == ["positions stored in the KV cache (right axis)", "without the cache", "with the KV cache"]
    assert list(figure.data[0]["y"]) == timings["cache_positions"]
    assert list(figure.data[2]["x"]) == timings["lengths"]
    assert generate_tab.speed_plot(None) == {"__type__": "update", "visible": False}


def test_the_speed_test_checks_its_inputs_too():
    assert error_message(generate_tab.measure_kv_speed, BUNDLED, "") == "Type a prompt first: the box is empty."
    assert error_message(generate_tab.measure_kv_speed, BUNDLED, ["x"]) == "The prompt must be text; got ['x']."


def test_each_endpoint_has_a_concurrency_limit_by_its_cost():
    with gr.Blocks() as demo:
        generate_tab.build_tab(models.model_picker())
    events = {fn.api_name: fn for fn in demo.fns.values()}
    assert events["generate"].concurrency_limit == generate_tab.GENERATE_AT_ONCE == 2  # more thrash the GIL
    assert events["generate_speed"].concurrency_limit == 1
    assert events["generate_speed"].concurrency_id != events["generate"].concurrency_id
    assert not events["generate"].preprocess  # the handlers check the raw values themselves


# ---------------------------------------------------------------- the page opens drawn
def test_the_first_view_is_the_default_prompts_continuation():
    text_html, chart, status, n_steps, shown, run, text = generate_tab.first_view(BUNDLED)
    assert n_steps == generate_tab.DEFAULT_MAX_NEW_TOKENS == 30
    assert text_html.count('class="tok"') == 30 and text_html.count("data-chosen") == 1
    # It opens at the first step whose token is on the chart (orange), close to the prompt.
    token, _, candidates = run["steps"][shown - 1]
    assert token in [candidate for candidate, _ in candidates]
    assert all(step[0] not in [c for c, _ in step[2]] for step in run["steps"][:shown - 1])
    assert re.search(rf'title="step {shown}: [^"]*" style="[^"]*outline', text_html)
    assert chart.layout.title.text.startswith(f"step {shown}: the 10 most likely next tokens (orange = chosen)")
    assert f"An example of 30 tokens with the default settings, at step {shown}: " in status
    assert len(run["steps"]) == 30
    assert text == list(run_generation())[-1][5]  # the same text as Generate with the defaults (seeded)


def build_generate_tab():
    with gr.Blocks() as demo:
        picker = models.model_picker()
        generate_tab.build_tab(picker)
    return demo, picker


def test_the_tab_is_built_with_its_first_view():
    demo, _ = build_generate_tab()
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    assert by_id["generate-candidates"].value is not None
    assert by_id["generate-text"].value.count('class="tok"') == 30
    assert "An example of 30 tokens" in by_id["generate-status"].value
    step = next(block for block in demo.blocks.values() if getattr(block, "label", "") ==
                "step (after a run: revisit any step)")
    assert (step.value, step.maximum, step.interactive) == (generate_tab.first_view(BUNDLED)[4], 30, True)
    assert by_id["generate-speed-plot"].visible is False  # until a speed test ran


def triggers(demo, block) -> dict[str, list]:
    """{event name: [the handlers it runs]} for one component."""
    found: dict[str, list] = {}
    for fn in demo.fns.values():
        for target, event in fn.targets:
            if target == block._id:
                found.setdefault(event, []).append(fn)
    return found


def test_enter_in_the_prompt_generates_and_the_step_slider_follows_the_keys():
    demo, _ = build_generate_tab()
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    prompt = by_id["generate-prompt"]
    assert prompt.lines == 1  # Gradio submits a one-line box on Enter (Shift+Enter for a new line)
    submit = triggers(demo, prompt)["submit"]
    assert [fn.fn.__name__ for fn in submit] == ["generate"]  # the handler is named as its endpoint (MCP tool)
    step = next(block for block in demo.blocks.values() if getattr(block, "label", "") ==
                "step (after a run: revisit any step)")
    events = triggers(demo, step)
    assert {"input", "release"} <= set(events)
    assert events["input"][0].trigger_mode == "always_last"


def test_picking_another_model_shows_the_prompts_next_tokens():
    text_html, chart, status, slider, run, text = generate_tab.preview_next_token(NANO, "Hello there", 0.8, 40, 1.0)
    assert "Hello there" in text_html and 'class="tok"' not in text_html
    assert chart.layout.title.text == "after your prompt: the 10 most likely next tokens (sampling)"
    assert len(chart.data[0].y) == 10
    assert status.startswith(f"**{NANO}** · prompt 2 tokens")
    assert (slider["interactive"], run, text) == (False, None, "")


def test_picking_a_model_that_cannot_load_says_so_in_the_status_not_a_popup():
    _, chart, status, _, _, _ = generate_tab.preview_next_token("No such model", PROMPT, 0.8, 40, 1.0)
    assert chart is None and status.startswith("⚠ Unknown model 'No such model'")
    _, _, status, _, _, _ = generate_tab.preview_next_token(BUNDLED, "", 0.8, 40, 1.0)
    assert status == "⚠ Type a prompt first: the box is empty."


def test_candidates_show_spaces_as_the_tokenizer_tab_does():
    figure = generate_tab.candidates_figure([(" the", 0.5), ("\n", 0.2)], " the", 1)
    assert list(figure.data[0].y[:2]) == ["1. ·the", "2. ↵"]


# ---------------------------------------------------------------- through the API
def call_raw(app_url: str, api_name: str, body: str) -> tuple[str, str]:
    """POST a JSON body as any HTTP client can (NaN and Infinity included): (last event, its data)."""
    url = f"{app_url.rstrip('/')}/gradio_api/call/{api_name}"
    with httpx.Client(timeout=120) as http:
        posted = http.post(url, content=body, headers={"Content-Type": "application/json"})
        assert posted.status_code == 200, posted.text
        stream = http.get(f"{url}/{posted.json()['event_id']}").text
    events = [block for block in stream.strip().split("\n\n") if block.startswith("event:")]
    last = events[-1].split("\n")
    return last[0].removeprefix("event: "), last[1].removeprefix("data: ")


@pytest.mark.app
def test_api_generate_with_every_default_returns_the_text(client):
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    assert all(parameter["parameter_has_default"] for parameter in parameters)
    text_html, chart, status, slider, text, result = client.predict(api_name="/generate")
    assert "Generated 30 tokens." in status
    assert text and text == html_text(text_html)
    assert result["text"] == text and len(result["new_token_ids"]) == 30
    assert result["token_ids"][-30:] == result["new_token_ids"]
    assert json.loads(chart["plot"])["layout"]["title"]["text"].startswith("step 30: ")


def html_text(text_html: str) -> str:
    """The generated part of the text html, unescaped."""
    return html.unescape("".join(re.findall(r'class="tok"[^>]*>(.*?)</span>', text_html, flags=re.S)))


@pytest.mark.app
@pytest.mark.parametrize(("body_value", "message"), [
    ("NaN", "The temperature must be a number from 0 to 2; got NaN (not a number)."),
    ("Infinity", "The temperature must be a number from 0 to 2; got infinity."),
    ("1" + "0" * 40, f"The temperature must be a number from 0 to 2; got {('1' + '0' * 40)[:37]}..."),
])
def test_api_non_finite_and_huge_numbers_get_the_plain_message(app_url, body_value, message):
    body = f'{{"data": ["{BUNDLED}", "Hello", 3, {body_value}, 0, 1.0, 1]}}'
    event, data = call_raw(app_url, "generate", body)
    assert event == "error"
    assert message in data


@pytest.mark.app
def test_api_speed_endpoint_returns_both_speeds(client):
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate_speed"]
    assert all(parameter["parameter_has_default"] for parameter in endpoint["parameters"])
    assert len(endpoint["returns"]) == 1  # the summary only, as before (the plot's timings stay in the page)
    line = client.predict(api_name="/generate_speed")
    assert isinstance(line, str) and SPEED_LINE.search(line)
    assert "The cache filled up as it went" in line


def test_the_generation_worker_gives_the_same_steps_as_the_server():
    from gpt_core.generate import stream_generate
    from ui import decode_worker

    decode_worker.start([BUNDLED])
    try:
        ids = models.load_choice(BUNDLED).tokenizer.encode(PROMPT)
        for temperature, seed in ((0.0, 1), (0.8, 7)):
            remote = decode_worker.worker_steps(BUNDLED, ids, 12, temperature, 40, None, seed, 10)
            local = list(stream_generate(models.load_choice(BUNDLED).model, torch.tensor(ids), 12,
                                         temperature=temperature, top_k=40, seed=seed, top_n=10))
            assert [step.token_id for step in remote] == [step.token_id for step in local]
            largest = max(abs(a.prob - b.prob) for a, b in zip(remote, local))
            print(f"temperature {temperature}: largest probability difference {largest:.2e}")
            assert largest < 1e-4
        assert decode_worker.worker_steps("GPT-2 small (124M, download)", ids, 3, 0.0, None, None, 1, 10) is None
    finally:
        decode_worker.stop()
    assert decode_worker.worker_steps(BUNDLED, ids, 3, 0.0, None, None, 1, 10) is None  # stopped: in the server
