"""Generate tab: the chosen model continues a prompt token by token, showing what it considered each step.

Cost per request, for a class on one small server: while tokens stream in, each update adds one span to the
text HTML (Gradio sends only that span); the probability chart is drawn once, for the last step, and again
only when the step slider moves. The KV-cache speed comparison times dozens of model calls, so it runs only
when asked for, one request at a time, on its own endpoint (/generate_speed).
"""

from __future__ import annotations

import reprlib
import time
from dataclasses import dataclass, field

import gradio as gr
import torch

from gpt_core.fast import is_fast
from gpt_core.generate import (
    filter_logits,
    generate,
    generation_loop,
    next_token_probs,
    sample_next_token,
    start_decoding,
    stream_generate,
)
from gpt_core.tokenizer import ENDOFTEXT
from ui.common import cap_text, explain, friendly, number_input, show_source
from ui.decode_worker import worker_steps
from ui.models import DEFAULT_CHOICE, LoadedModel, load_choice
from visualizations.generation import candidates_figure, generation_html, prompt_span, token_span

MAX_NEW_TOKENS = 200
MAX_PROMPT_CHARS = 5_000
MAX_TEMPERATURE = 2.0
MAX_TOP_K = 1_000_000  # more than any vocabulary: a top-k above the vocabulary size keeps every token
MAX_SEED = 2**32 - 1
SPEED_TOKENS = 24  # new tokens timed with and without the KV cache
TOP_N = 10
# While streaming, the text is sent at most this often: each update is a trip through Gradio's queue, and
# thirty students' 30-token answers sent token by token kept the server busy with messages, not with the model.
STREAM_EVERY_S = 0.2

# What the page shows first; an API client that leaves a parameter out gets these too.
DEFAULT_PROMPT = "Every effort moves you"
DEFAULT_MAX_NEW_TOKENS = 30
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 1.0
DEFAULT_SEED = 123

# How many requests of each kind the server works on at once; the others wait their turn in Gradio's queue.
# Two at once: a small model's decoding is mostly Python, so more threads only fight for the interpreter lock
# (bench/classroom.py, 30 students on /generate alone: 7.5 answers/s with 2 at once, 6.6 with 1, 4.2 with 6).
GENERATE_AT_ONCE = 2
SPEED_AT_ONCE = 1  # the speed test times the model: two at once would slow each other and the class
SHOW_STEP_AT_ONCE = 8  # one small chart

INTRO = """
### Generate
The model reads your prompt and gives a probability to every token of its vocabulary; one is picked,
appended, and the loop starts again. **Temperature** sharpens (< 1) or flattens (> 1) the probabilities;
0 means *greedy*: always the most likely token. **Top-k** keeps only the k most likely tokens, **top-p**
the smallest set whose probabilities add up to p. The **seed** makes sampling repeatable.
The **KV cache** keeps each layer's keys and values so a new token costs one position of work, not the
whole text again: press **Measure KV-cache speed** to time generation with and without it.
"""


# ---------------------------------------------------------------------------------------------------------------
# Checking the inputs
# ---------------------------------------------------------------------------------------------------------------


def sampling_settings(temperature, top_k, top_p, vocab_size: int):
    """Check the sampling inputs and turn them into generate()'s arguments: (temperature, top_k, top_p, notes).

    An empty input means: greedy (temperature), off (top-k, top-p).

    >>> sampling_settings(0, 0, 1.0, 50257)
    (0.0, None, None, ['Temperature 0: greedy decoding, always the most likely token (the seed does not matter).'])
    >>> sampling_settings(float("nan"), 0, 1.0, 50257)
    Traceback (most recent call last):
    ...
    ValueError: The temperature must be a number from 0 to 2; got NaN (not a number).
    """
    notes = []
    temperature = number_input(temperature, "The temperature", minimum=0, maximum=MAX_TEMPERATURE, default=0.0)
    if temperature == 0:
        notes.append("Temperature 0: greedy decoding, always the most likely token (the seed does not matter).")
    top_p = number_input(top_p, "top-p (1 = off)", minimum=0, maximum=1, default=1.0)
    if top_p == 0:
        raise ValueError("top-p (1 = off) must be more than 0: it is the share of the probability to keep. "
                         "Use 1 to switch it off.")
    top_k = number_input(top_k, "top-k (0 = off)", minimum=0, maximum=MAX_TOP_K, whole=True, default=0)
    if top_k > vocab_size:
        notes.append(f"top-k {top_k:,} is more than the vocabulary ({vocab_size:,} tokens): using {vocab_size:,}, "
                     f"which keeps every token.")
        top_k = vocab_size
    return float(temperature), (top_k or None), (top_p if top_p < 1.0 else None), notes


def prompt_text(prompt) -> tuple[str, list[str]]:
    """The prompt, cut to MAX_PROMPT_CHARS characters: (text, notes). Empty or not text: a ValueError."""
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"The prompt must be text; got {reprlib.repr(prompt)}.")
    prompt, cut_note = cap_text(prompt, MAX_PROMPT_CHARS, "prompt")
    if not prompt.strip():
        raise ValueError("Type a prompt first: the box is empty.")
    return prompt, [cut_note] if cut_note else []


def encode_prompt(tokenizer, prompt: str) -> tuple[list[int], list[str]]:
    """Token ids of the prompt: (ids, notes).

    ``<|endoftext|>`` typed in the prompt becomes the end-of-text token (the one id that separates
    documents in the training text), not the 13 characters; a note says so.
    """
    ids = tokenizer.encode(prompt, allowed_special={ENDOFTEXT})
    end_of_text_id = tokenizer.special_tokens.get(ENDOFTEXT)
    if end_of_text_id is None or ENDOFTEXT not in prompt:
        return ids, []
    return ids, [f"`{ENDOFTEXT}` in your prompt was read as the end-of-text token (id {end_of_text_id}), the "
                 f"marker between two documents in the training text."]


def fit_in_context(ids: list[int], max_new_tokens: int, context_length: int) -> tuple[list[int], int, list[str]]:
    """Keep the end of the prompt so that prompt + new tokens fit the context window: (ids, max_new_tokens, notes).

    >>> ids, max_new_tokens, notes = fit_in_context([1, 2, 3, 4], 3, 6)
    >>> ids, max_new_tokens
    ([2, 3, 4], 3)
    >>> print(notes[0])
    Your prompt has 4 tokens; keeping the last 3 so that prompt + new tokens fit in the model's 6-token context window.
    """
    notes = []
    if max_new_tokens >= context_length:
        max_new_tokens = context_length - 1
        notes.append(f"The model reads at most {context_length} tokens: generating {max_new_tokens} new ones.")
    keep = context_length - max_new_tokens
    if len(ids) > keep:
        notes.append(f"Your prompt has {len(ids):,} tokens; keeping the last {keep} so that prompt + new tokens fit "
                     f"in the model's {context_length}-token context window.")
        ids = ids[-keep:]
    return ids, max_new_tokens, notes


@dataclass
class GenerationRequest:
    """One checked request: the model, the prompt ids and generate()'s settings, plus notes for the student."""

    loaded: LoadedModel
    ids: list[int]
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int
    notes: list[str] = field(default_factory=list)

    def settings_line(self) -> str:
        """The settings in a few words, e.g. 'temperature 0.8 · top-k 40 · seed 123'."""
        if self.temperature == 0:
            parts = ["greedy"]
        else:
            parts = [f"temperature {self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        if self.top_p:
            parts.append(f"top-p {self.top_p:g}")
        if self.temperature > 0:
            parts.append(f"seed {self.seed}")
        return " · ".join(parts)


def prepare(choice, prompt, max_new_tokens, temperature, top_k, top_p, seed) -> GenerationRequest:
    """Check every input (a ValueError with a message for the student if one is wrong) and load the model."""
    prompt, notes = prompt_text(prompt)
    max_new_tokens = number_input(max_new_tokens, "The number of new tokens", minimum=1, maximum=MAX_NEW_TOKENS,
                                  whole=True, default=DEFAULT_MAX_NEW_TOKENS)
    seed = number_input(seed, "The seed", minimum=0, maximum=MAX_SEED, whole=True, default=DEFAULT_SEED)
    loaded = load_choice(choice)
    temperature, top_k, top_p, sampling_notes = sampling_settings(temperature, top_k, top_p, loaded.cfg.vocab_size)
    ids, prompt_notes = encode_prompt(loaded.tokenizer, prompt)
    ids, max_new_tokens, context_notes = fit_in_context(ids, max_new_tokens, loaded.cfg.context_length)
    notes += prompt_notes + sampling_notes + context_notes
    return GenerationRequest(loaded, ids, max_new_tokens, temperature, top_k, top_p, seed, notes)


# ---------------------------------------------------------------------------------------------------------------
# Generate: stream the text, draw the chart once
# ---------------------------------------------------------------------------------------------------------------


def run_generation(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT, max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                   temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K, top_p=DEFAULT_TOP_P, seed=DEFAULT_SEED):
    """Stream the text one token at a time, then draw the chart of the last step.

    Yields (text html, candidates chart, status, step slider, steps state, generated text). While streaming,
    only the text html changes, by one span per token. The final update draws the chart once, marks the last
    token and holds the generated text on its own (for API clients).
    """
    request = prepare(choice, prompt, max_new_tokens, temperature, top_k, top_p, seed)
    tokenizer = request.loaded.tokenizer
    prompt_shown = tokenizer.decode(request.ids)
    header = "\n\n".join([f"**{request.loaded.label}** · {request.settings_line()} · prompt {len(request.ids)} tokens",
                          *[f"⚠ {note}" for note in request.notes]])
    generating = f"{header}\n\nGenerating {request.max_new_tokens} tokens…"
    settings = (request.max_new_tokens, request.temperature, request.top_k, request.top_p, request.seed)
    done = worker_steps(request.loaded.label, request.ids, *settings, TOP_N)  # the built-in models, elsewhere
    stream = iter(done) if done is not None else stream_generate(
        request.loaded.model, torch.tensor(request.ids), request.max_new_tokens, temperature=request.temperature,
        top_k=request.top_k, top_p=request.top_p, seed=request.seed, eos_id=None, top_n=TOP_N, use_cache=True)
    text_html = prompt_span(prompt_shown)
    new_ids = []
    steps = []  # per step: (token text, prob, [(candidate text, prob), ...])
    last_update = 0.0
    for step in stream:
        token = tokenizer.decode([step.token_id])
        candidates = [(tokenizer.decode([token_id]), prob) for token_id, prob in step.candidates]
        new_ids.append(step.token_id)
        steps.append((token, step.prob, candidates))
        text_html += token_span(len(steps), token, step.prob)  # Gradio sends only the new spans
        if time.perf_counter() - last_update < STREAM_EVERY_S:
            continue  # a fast model makes tokens quicker than an eye can follow: send them together
        last_update = time.perf_counter()
        # The first update clears the chart, the steps and the text of the last run, and locks the step slider.
        # The next ones send the same values again: Gradio sends nothing for an unchanged value, and in
        # Gradio 6.31 that costs less than gr.skip() (which rebuilds the skipped component on every update).
        slider = gr.update(value=1, interactive=False) if len(steps) == 1 else 1
        yield text_html, None, generating, slider, None, ""
    token, prob, candidates = steps[-1]
    yield (
        generation_html(prompt_shown, [s[0] for s in steps], [s[1] for s in steps], highlight=len(steps)),
        candidates_figure(candidates, token, len(steps), TOP_N, prob),
        f"{header}\n\nGenerated {len(steps)} tokens. Move the step slider to see what the model considered at "
        f"any step.",
        gr.update(minimum=1, maximum=max(len(steps), 2), value=len(steps), interactive=True),
        {"prompt": prompt_shown, "steps": steps},
        tokenizer.decode(new_ids),
    )


def show_step(step, run: dict | None):
    """Revisit one step after the run: the text with that token marked, and the chart of its candidates."""
    if not run or not run.get("steps"):
        raise ValueError("Generate some text first: there are no steps to show yet.")
    steps = run["steps"]
    step = number_input(step, "The step", minimum=1, maximum=len(steps), whole=True, default=len(steps))
    token, prob, candidates = steps[step - 1]
    html = generation_html(run["prompt"], [s[0] for s in steps], [s[1] for s in steps], highlight=step)
    return html, candidates_figure(candidates, token, step, TOP_N, prob)


# ---------------------------------------------------------------------------------------------------------------
# The KV-cache speed test (on request)
# ---------------------------------------------------------------------------------------------------------------


def tokens_per_second(model, idx: torch.Tensor, n_tokens: int, use_cache: bool) -> float:
    """Time greedy generation of n_tokens new tokens."""
    start = time.perf_counter()
    out = generate(model, idx, n_tokens, use_cache=use_cache)
    elapsed = time.perf_counter() - start
    return (out.shape[-1] - idx.shape[-1]) / max(elapsed, 1e-9)


def measure_speed(model, idx: torch.Tensor, n_tokens: int, model_name: str = "") -> str:
    """Cached vs uncached tokens/s on the same prompt (after a warm-up; best of 3 runs each, interleaved): one line."""
    n_tokens = max(1, min(n_tokens, SPEED_TOKENS))
    generate(model, idx, 2, use_cache=True)  # warm-up: the first calls allocate memory
    generate(model, idx, 2, use_cache=False)
    cached, uncached = [], []
    for _ in range(3):
        cached.append(tokens_per_second(model, idx, n_tokens, use_cache=True))
        uncached.append(tokens_per_second(model, idx, n_tokens, use_cache=False))
    fast, slow = max(cached), max(uncached)
    on_model = f"{model_name}, " if model_name else ""
    text = (f"**KV-cache speed** ({on_model}{n_tokens} greedy tokens after your {idx.shape[-1]}-token prompt, "
            f"best of 3): with the KV cache **{fast:,.0f} tokens/s**, without **{slow:,.0f} tokens/s** "
            f"(the cache runs at {fast / slow:.2f}× the speed).")
    if not is_fast(model):
        text += (" This server runs the book layer alone (LLM_LAB_PLAIN=1): its model keeps no KV cache, so "
                 "both runs read the whole text for every token.")
    elif fast < 1.3 * slow:
        text += (" With a short text, most of the work is the output layer (emb_dim × vocabulary), so the cache "
                 "saves little; its gain grows with the length of the text and the size of the model.")
    return text


def measure_kv_speed(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT) -> str:
    """Time greedy generation after the prompt with and without the KV cache: one line with both speeds."""
    prompt, notes = prompt_text(prompt)
    loaded = load_choice(choice)
    ids, prompt_notes = encode_prompt(loaded.tokenizer, prompt)
    ids, n_tokens, context_notes = fit_in_context(ids, SPEED_TOKENS, loaded.cfg.context_length)
    line = measure_speed(loaded.model, torch.tensor(ids), n_tokens, loaded.label)
    return "\n\n".join([line, *[f"⚠ {note}" for note in notes + prompt_notes + context_notes]])


# ---------------------------------------------------------------------------------------------------------------
# Layout and wiring
# ---------------------------------------------------------------------------------------------------------------


def build_tab(model_choice: gr.Dropdown) -> None:
    explain(INTRO)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS)
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop")
                speed = gr.Button("Measure KV-cache speed")
        with gr.Column(scale=2):
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="max new tokens")
            temperature = gr.Slider(0.0, MAX_TEMPERATURE, value=DEFAULT_TEMPERATURE, step=0.05,
                                    label="temperature (0 = greedy)")
            with gr.Row():
                top_k = gr.Number(DEFAULT_TOP_K, label="top-k (0 = off)", precision=0, minimum=0, maximum=MAX_TOP_K)
                top_p = gr.Number(DEFAULT_TOP_P, label="top-p (1 = off)", step=0.05, minimum=0, maximum=1)
                seed = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
    status = gr.Markdown(elem_classes=["lab-note"])
    speed_note = gr.Markdown(elem_classes=["lab-note"])
    with gr.Row():
        with gr.Column(scale=3):
            text_html = gr.HTML(label="text", elem_classes=["lab-tokens", "lab-generation"])
            step = gr.Slider(1, 2, value=1, step=1, label="step (after a run: revisit any step)", interactive=False)
            with gr.Accordion("The generated text alone (to copy)", open=False):
                generated_text = gr.Textbox(label="generated text", interactive=False, lines=3, buttons=["copy"])
        candidates_plot = gr.Plot(show_label=False, scale=2, elem_id="generate-candidates")
    steps_state = gr.State(None)  # {"prompt": text, "steps": [(token, prob, candidates), ...]}
    show_source(generate, generation_loop, start_decoding, sample_next_token, next_token_probs, filter_logits,
                stream_generate)

    inputs = [model_choice, prompt, max_new, temperature, top_k, top_p, seed]
    outputs = [text_html, candidates_plot, status, step, steps_state, generated_text]
    # preprocess=False: the handlers get the values as sent and check each one themselves (number_input), so a
    # NaN, an infinity or a wrong type from an API client gets a plain message, not Gradio's or Python's wording.
    event = run.click(friendly(run_generation), inputs, outputs, api_name="generate", preprocess=False,
                      concurrency_limit=GENERATE_AT_ONCE, concurrency_id="generate")
    stop.click(None, None, None, cancels=[event], api_name=False)
    speed.click(friendly(measure_kv_speed), [model_choice, prompt], speed_note, api_name="generate_speed",
                preprocess=False, concurrency_limit=SPEED_AT_ONCE, concurrency_id="generate_speed")
    step.release(friendly(show_step), [step, steps_state], [text_html, candidates_plot], api_name=False,
                 preprocess=False, concurrency_limit=SHOW_STEP_AT_ONCE)
