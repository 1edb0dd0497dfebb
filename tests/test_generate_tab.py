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
import plotly.graph_objects as go
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.tokenizer import ENDOFTEXT
from ui import generate_tab, models
from ui.common import friendly
from ui.generate_tab import MAX_SEED, prepare, run_generation, sampling_settings, show_step
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
               if isinstance(value, go.Figure)]
    assert figures == [N_TOKENS]  # one chart, in the last update
    assert [outputs[0].count('class="tok"') for outputs in greedy_run] == [*range(1, N_TOKENS + 1), N_TOKENS]


def test_while_streaming_only_the_text_changes(greedy_run):
    first = greedy_run[0]
    assert first[1] is None and first[4] is None and first[5] == ""  # the last run's chart, steps and text go
    assert "Generating 12 tokens…" in first[2]
    assert first[3]["interactive"] is False  # the step slider waits for the end
    for previous, outputs in zip(greedy_run[:-2], greedy_run[1:-1]):
        assert outputs[0].startswith(previous[0])  # one span appended: Gradio sends only that span
        assert outputs[1:] == (None, first[2], 1, None, "")  # unchanged, so Gradio sends nothing for them
    assert [outputs[0].count("outline") for outputs in greedy_run] == [0] * N_TOKENS + [1]


def test_the_final_chart_is_the_last_step_and_the_slider_redraws_it(greedy_run):
    text_html, figure, status, slider, run, text = greedy_run[-1]
    assert figure.layout.title.text.startswith(f"step {N_TOKENS}: ")
    assert figure.data[0].marker.color[0] == CHOSEN_COLOR  # greedy: the chosen token is the most likely one
    assert (slider["value"], slider["maximum"], slider["interactive"]) == (N_TOKENS, N_TOKENS, True)
    assert len(run["steps"]) == N_TOKENS
    again_html, again_figure = show_step(N_TOKENS, run)
    assert again_html == text_html and again_figure.to_json() == figure.to_json()
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
    monkeypatch.setattr(generate_tab, "tokens_per_second", no_speed_test)
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
def test_the_speed_test_gives_one_line_with_both_speeds():
    line = generate_tab.measure_kv_speed(BUNDLED, PROMPT)
    assert SPEED_LINE.search(line)
    assert "\n" not in line


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
    text_html, chart, status, slider, text = client.predict(api_name="/generate")
    assert "Generated 30 tokens." in status
    assert text and text == html_text(text_html)
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
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate_speed"][
        "parameters"]
    assert all(parameter["parameter_has_default"] for parameter in parameters)
    assert SPEED_LINE.search(client.predict(api_name="/generate_speed"))


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
