"""Generate tab: the chosen model continues a prompt token by token, showing what it considered each step.

Cost per request, for a class on one small server: while tokens stream in, each update adds one span to the
text HTML (Gradio sends only that span); the probability chart is drawn once, for the last step, and again
only when the step slider moves. The page opens on a continuation of the default prompt made once when the
server builds the page (so thirty students opening it cost nothing); picking another model redraws the
prompt's next-token chart (one forward pass). The KV-cache speed comparison times a hundred model calls or
more, so it runs only when asked for, one request at a time and within a time budget, on its own endpoint
(/generate_speed).
"""

from __future__ import annotations

import functools
import reprlib
import time
from dataclasses import asdict, dataclass, field

import gradio as gr
import torch

from gpt_core.fast import is_fast
from gpt_core.files import human_size
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
from ui.api import tool
from ui.common import cap_text, explain, friendly, number_input, plural, show_source, student_message
from ui.decode_worker import worker_steps
from ui.follow import followed
from ui.models import DEFAULT_CHOICE, LoadedModel, load_choice, one_torch_thread
from ui.runs import explore_view
from visualizations.generation import (
    candidates_figure,
    generation_html,
    kv_speed_figure,
    prompt_span,
    token_span,
)

MAX_NEW_TOKENS = 200
MAX_PROMPT_CHARS = 5_000
MAX_TEMPERATURE = 2.0
MAX_TOP_K = 1_000_000  # more than any vocabulary: a top-k above the vocabulary size keeps every token
MAX_SEED = 2**32 - 1
# The KV-cache speed test: greedy tokens timed one by one with and without the cache, side by side, after an
# untimed warm-up; repeated while its time budget lasts (each position keeps its fastest time, which is steady
# on a busy server). A big model gets fewer positions or runs, never more time.
SPEED_TOKENS = 64  # new tokens timed (fewer when the prompt leaves less room in the context window)
SPEED_WARMUP_TOKENS = 8  # untimed first: the first calls allocate memory
SPEED_RUNS = 3  # at most this many timed runs; the fewest a run ends with is 1
SPEED_NEIGHBOURS = 2  # each token's time is the fastest of itself and 2 neighbours each side (see without_pauses)
SPEED_BUDGET_S = 1.5  # seconds of timed work at most (plus one step): the test must not stall the class
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
whole text again: press **Measure KV-cache speed** to time each new token with and without it.
Press **Enter** in the prompt to generate; **Shift+Enter** starts a new line.
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


def request_header(request: GenerationRequest) -> str:
    """The model, the settings, the prompt's length and the notes about the inputs (Markdown)."""
    return "\n\n".join([f"**{request.loaded.label}** · {request.settings_line()} · prompt "
                         f"{plural(len(request.ids), 'token')}", *[f"⚠ {note}" for note in request.notes]])


def final_update(request: GenerationRequest, prompt_shown: str, steps: list, new_ids: list[int], header: str):
    """The last update of a run: the text with the last token marked, its chart, the status, the step slider,
    the steps (for the slider) and the generated text."""
    token, prob, candidates = steps[-1]
    return (
        generation_html(prompt_shown, [s[0] for s in steps], [s[1] for s in steps], highlight=len(steps)),
        candidates_figure(candidates, token, len(steps), TOP_N, prob),
        f"{header}\n\nGenerated {plural(len(steps), 'token')}. Move the step slider to see what the model "
        f"considered at any step.",
        gr.update(minimum=1, maximum=max(len(steps), 2), value=len(steps), interactive=True),
        {"prompt": prompt_shown, "steps": steps},
        request.loaded.tokenizer.decode(new_ids),
        generation_result(request, prompt_shown, new_ids),
    )


def generation_result(request: GenerationRequest, prompt_shown: str, new_ids: list[int]) -> dict:
    """What a script or an agent reads from /generate: the prompt, the new text, and every token id."""
    return {"model": request.loaded.label, "prompt": prompt_shown, "text": request.loaded.tokenizer.decode(new_ids),
            "token_ids": [*request.ids, *new_ids], "new_token_ids": list(new_ids),
            "settings": {"max_new_tokens": request.max_new_tokens, "temperature": request.temperature,
                         "top_k": request.top_k, "top_p": request.top_p, "seed": request.seed},
            "notes": list(request.notes)}


def request_steps(request: GenerationRequest):
    """Every step of a request: from the worker process for the built-in models, else generated here."""
    settings = (request.max_new_tokens, request.temperature, request.top_k, request.top_p, request.seed)
    done = worker_steps(request.loaded.label, request.ids, *settings, TOP_N)  # the built-in models, elsewhere
    return iter(done) if done is not None else local_steps(request)


def local_steps(request: GenerationRequest):
    """Every step of a request, generated in this process (the worker process is for the class's requests)."""
    return stream_generate(request.loaded.model, torch.tensor(request.ids), request.max_new_tokens,
                           temperature=request.temperature, top_k=request.top_k, top_p=request.top_p,
                           seed=request.seed, eos_id=None, top_n=TOP_N, use_cache=True)


def run_generation(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT, max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                   temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K, top_p=DEFAULT_TOP_P, seed=DEFAULT_SEED):
    """Continue a prompt with a GPT model, token by token (greedy or sampled with temperature, top-k, top-p and a seed).

    While streaming, only the text html changes, by one span per token. The final update draws the chart once,
    marks the last token and holds the generated text and the result on their own (for API clients).

    Args:
        choice: the model (a label of the model menu).
        prompt: the text to continue.
        max_new_tokens: how many tokens to write (1 to 200).
        temperature: 0 = greedy, higher = more surprising choices (at most 2).
        top_k: keep only the k most likely tokens (0 = off).
        top_p: keep the most likely tokens until their probabilities add up to p (1 = off).
        seed: the random seed of the sampling.

    Returns:
        The text with the last token marked (HTML), a figure of the last step's candidates, the status, the step
        slider, the generated text alone, and the result: a dict with the prompt, the text, the token ids (prompt
        and new) and the new token ids.
    """
    request = prepare(choice, prompt, max_new_tokens, temperature, top_k, top_p, seed)
    tokenizer = request.loaded.tokenizer
    prompt_shown = tokenizer.decode(request.ids)
    header = request_header(request)
    generating = f"{header}\n\nGenerating {plural(request.max_new_tokens, 'token')}…"
    stream = request_steps(request)
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
        yield text_html, None, generating, slider, None, "", None
    yield final_update(request, prompt_shown, steps, new_ids, header)


@functools.cache
def first_view(choice: str = DEFAULT_CHOICE) -> tuple:
    """What the tab shows when the page opens: the default prompt's continuation with the default settings,
    at its first step (the tokens the model considered right after the prompt).

    Made once per server when the page is built (about 0.1 s for the bundled model, in this process), then
    every visitor gets it as the components' first values. Sampling is seeded, so it is the same text that
    pressing Generate with the defaults makes.
    """
    request = prepare(choice, DEFAULT_PROMPT, DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_K,
                      DEFAULT_TOP_P, DEFAULT_SEED)
    tokenizer = request.loaded.tokenizer
    steps, new_ids = [], []
    for step in local_steps(request):
        new_ids.append(step.token_id)
        steps.append((tokenizer.decode([step.token_id]), step.prob,
                      [(tokenizer.decode([token_id]), prob) for token_id, prob in step.candidates]))
    _, _, _, _, run, text, _ = final_update(request, tokenizer.decode(request.ids), steps, new_ids,
                                         request_header(request))
    # The first step whose token is in its chart (a sampled token can be a rare one, drawn outside the top 10).
    shown = next((number for number, (token, _, candidates) in enumerate(steps, start=1)
                  if token in [candidate for candidate, _ in candidates]), 1)
    text_html, chart = show_step(shown, run)
    where = "right after the prompt" if shown == 1 else f"for the {ordinal(shown)} new token"
    status = (f"{request_header(request)}\n\nAn example of {plural(len(steps), 'token')} with the default "
              f"settings, at step {shown}: the tokens the model considered {where}. Move the step slider (or use "
              f"the arrow keys) to follow it; press **Generate** (or Enter in the prompt) to write your own.")
    return text_html, chart, status, len(steps), shown, run, text


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st.

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd']
    """
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def preview_next_token(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT, temperature=DEFAULT_TEMPERATURE,
                       top_k=DEFAULT_TOP_K, top_p=DEFAULT_TOP_P):
    """After another model is picked: the prompt and the chart of its next-token candidates (one forward pass).

    Returns the same outputs as a run, the old run cleared. A problem (a model that needs the internet, a
    prompt or setting that cannot be used) is said in the status line, never as a popup: the student only
    picked a model.
    """
    try:
        loaded = load_choice(choice)
        prompt, notes = prompt_text(prompt)
        temperature, top_k, top_p, sampling_notes = sampling_settings(temperature, top_k, top_p,
                                                                      loaded.cfg.vocab_size)
        ids, prompt_notes = encode_prompt(loaded.tokenizer, prompt)
        ids, _, context_notes = fit_in_context(ids, 1, loaded.cfg.context_length)
        with torch.inference_mode():
            logits = start_decoding(loaded.model, 1, use_cache=False)(torch.tensor([ids]))  # (1, vocab)
            probs = next_token_probs(logits, temperature, top_k, top_p)[0]  # (vocab,)
            top = torch.topk(probs, min(TOP_N, probs.shape[0]))
        candidates = [(loaded.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)
                      if p > 0]
    except Exception as error:  # noqa: BLE001 - said in the status line
        return (None, None, f"⚠ {student_message(error)}", gr.update(value=1, interactive=False), None, "")
    shown = "sampling" if temperature > 0 else "softmax"
    chart = candidates_figure(candidates, None, 1, TOP_N,
                              title=f"after your prompt: the {TOP_N} most likely next tokens ({shown})")
    status = "\n\n".join([
        f"**{loaded.label}** · prompt {plural(len(ids), 'token')} · the chart shows the tokens it would most "
        f"likely write next. Press **Generate** (or Enter in the prompt) to continue the prompt.",
        *[f"⚠ {note}" for note in notes + prompt_notes + context_notes +
          [note for note in sampling_notes if not note.startswith("Temperature 0")]],
    ])
    return (prompt_span(loaded.tokenizer.decode(ids)), chart, status, gr.update(value=1, interactive=False),
            None, "")


def show_step(step, run: dict | None):
    """Revisit one step after the run: the text with that token marked, and the chart of its candidates."""
    if not run or not run.get("steps"):
        raise ValueError("Generate some text first: there are no steps to show yet.")
    steps = run["steps"]
    step = number_input(step, "The step", minimum=1, maximum=len(steps), whole=True, default=len(steps))
    token, prob, candidates = steps[step - 1]
    html = generation_html(run["prompt"], [s[0] for s in steps], [s[1] for s in steps], highlight=step)
    return html, candidates_figure(candidates, token, step, TOP_N, prob)


def generate_steps(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT, max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                   temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K, top_p=DEFAULT_TOP_P, seed=DEFAULT_SEED,
                   step=None):
    """Replay a generation step by step: the tokens the model considered at each new token, and the one it chose.

    Sampling is seeded, so the same settings give the same text as generate. Needs no browser state.

    Args:
        choice: the model (a label of the model menu).
        prompt: the text to continue.
        max_new_tokens: how many tokens to write (1 to 200).
        temperature: 0 = greedy, higher = more surprising choices (at most 2).
        top_k: keep only the k most likely tokens (0 = off).
        top_p: keep the most likely tokens until their probabilities add up to p (1 = off).
        seed: the random seed of the sampling.
        step: the step shown in the figure (1 = the first new token; default the last).

    Returns:
        The text with that step's token marked (HTML), a figure of that step's top 10 candidates, and a dict
        with the prompt, the text, the token ids and every step's token, probability and candidates.
    """
    request = prepare(choice, prompt, max_new_tokens, temperature, top_k, top_p, seed)
    tokenizer = request.loaded.tokenizer
    steps, new_ids, replay = [], [], []
    for number, made in enumerate(request_steps(request), start=1):
        token = tokenizer.decode([made.token_id])
        candidates = [(tokenizer.decode([token_id]), prob) for token_id, prob in made.candidates]
        new_ids.append(made.token_id)
        steps.append((token, made.prob, candidates))
        replay.append({"step": number, "token": token, "token_id": made.token_id, "prob": made.prob,
                       "candidates": [{"token": text, "prob": prob} for text, prob in candidates]})
    prompt_shown = tokenizer.decode(request.ids)
    text_html, chart = show_step(len(steps) if step is None else step, {"prompt": prompt_shown, "steps": steps})
    return text_html, chart, {**generation_result(request, prompt_shown, new_ids), "steps": replay}


# ---------------------------------------------------------------------------------------------------------------
# The KV-cache speed test (on request)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class KVTimings:
    """One KV-cache speed test: for each new token i, the tokens the model read to make it (lengths[i]), the
    fastest time over the runs with and without the cache (seconds), and the positions each layer's cache held
    once it was made (empty when the model keeps no cache: the book layer alone)."""

    prompt_tokens: int
    lengths: list[int]
    cached_s: list[float]
    uncached_s: list[float]
    cache_positions: list[int]
    runs: int  # timed runs (each position keeps its fastest)
    cache_bytes: int  # what the cache holds at the end, all layers, keys and values


def cache_length(decoder) -> int:
    """Positions the decoder's KV cache holds (0 without one)."""
    caches = getattr(decoder, "kv_caches", None)
    return caches[0].length if caches else 0


def cache_bytes(decoder) -> int:
    """Bytes of keys and values stored so far, all layers together."""
    caches = getattr(decoder, "kv_caches", None) or []
    return sum(2 * cache.keys[:, :, :cache.length].numel() * cache.keys.element_size() for cache in caches)


def timed_run(model, ids: list[int], n_tokens: int, deadline: float):
    """Greedy decoding of up to n_tokens, each token made twice, with and without the KV cache, side by side
    (so both see the same load on the machine). Stops early at `deadline` (time.perf_counter()).

    Returns (seconds with the cache, seconds without, positions in the cache after each token, cache bytes).
    """
    cached = start_decoding(model, n_tokens, use_cache=True)
    uncached = start_decoding(model, n_tokens, use_cache=False)
    idx = torch.tensor([ids])  # (1, T)
    with_cache, without_cache, positions = [], [], []
    with torch.inference_mode():
        for _ in range(n_tokens):
            start = time.perf_counter()
            next_id = cached(idx).argmax(dim=-1, keepdim=True)  # only the new position's work
            middle = time.perf_counter()
            uncached(idx).argmax(dim=-1, keepdim=True)  # the whole text again
            end = time.perf_counter()
            with_cache.append(middle - start)
            without_cache.append(end - middle)
            positions.append(cache_length(cached))
            idx = torch.cat((idx, next_id), dim=1)  # both read the same text: the cached run's tokens
            if end > deadline:
                break
    return with_cache, without_cache, positions, cache_bytes(cached)


def time_kv_cache(model, ids: list[int], n_tokens: int, budget_s: float = SPEED_BUDGET_S,
                  runs: int = SPEED_RUNS) -> KVTimings:
    """Time every new token with and without the KV cache: an untimed warm-up, then up to `runs` runs while
    `budget_s` lasts (the first run is cut when it would go past it); each position keeps its fastest time
    over the runs and its neighbours (`without_pauses`)."""
    timed_run(model, ids, min(SPEED_WARMUP_TOKENS, n_tokens), time.perf_counter() + budget_s / 4)  # untimed
    started = time.perf_counter()
    deadline = started + budget_s
    best_cached, best_uncached, positions, stored = timed_run(model, ids, n_tokens, deadline)
    n_tokens = len(best_cached)  # the first run sets the length
    done = 1
    run_s = time.perf_counter() - started
    while done < runs and time.perf_counter() + run_s <= deadline:
        cached, uncached, _, _ = timed_run(model, ids, n_tokens, deadline)
        best_cached = [min(a, b) for a, b in zip(best_cached, cached)] + best_cached[len(cached):]
        best_uncached = [min(a, b) for a, b in zip(best_uncached, uncached)] + best_uncached[len(uncached):]
        done += 1
    lengths = [len(ids) + i for i in range(n_tokens)]
    return KVTimings(len(ids), lengths, without_pauses(best_cached), without_pauses(best_uncached),
                     positions if any(positions) else [], done, stored)


def without_pauses(seconds: list[float], reach: int = SPEED_NEIGHBOURS) -> list[float]:
    """Each token's time as the fastest of itself and its `reach` neighbours on each side: a shared server that
    pauses the test for a moment (another student's request) then shows no spike. The first token keeps its
    own time: with the cache it also reads the prompt, so it is slower for a reason.

    >>> without_pauses([5.0, 1.0, 1.1, 9.0, 1.2, 1.3], reach=1)
    [5.0, 1.0, 1.0, 1.1, 1.2, 1.2]
    """
    rest = seconds[1:]
    return seconds[:1] + [min(rest[max(0, i - reach): i + reach + 1]) for i in range(len(rest))]


def speed_line(timings: KVTimings, model_name: str = "", plain: bool = False) -> str:
    """What the test found, in a few sentences (Markdown)."""
    n = len(timings.lengths)
    # The first token with the cache also reads the whole prompt into it; the ones after it are the cache's gain.
    steady = slice(1, None) if n > 1 else slice(None)
    cached_ms = 1000 * sum(timings.cached_s[steady]) / len(timings.cached_s[steady])
    uncached_ms = 1000 * sum(timings.uncached_s[steady]) / len(timings.uncached_s[steady])
    total_cached, total_uncached = sum(timings.cached_s), sum(timings.uncached_s)
    ratio = total_uncached / max(total_cached, 1e-9)
    on_model = f"{model_name}, " if model_name else ""
    runs = "1 run" if timings.runs == 1 else f"fastest of {timings.runs} runs"
    runs += ", pauses of the server smoothed out"
    text = (f"**KV-cache speed** ({on_model}{plural(n, 'greedy token')} after your "
            f"{timings.prompt_tokens:,}-token prompt, {runs}): with the KV cache "
            f"**{n / max(total_cached, 1e-9):,.0f} tokens/s**, without **{n / max(total_uncached, 1e-9):,.0f} "
            f"tokens/s**. ")
    if plain:
        return text + (f"This server runs the book layer alone (LLM_LAB_PLAIN=1): its model keeps no KV cache, so "
                       f"both runs read the whole text for every token ({ratio:.2f}×, the same work).")
    if ratio >= 1.1:
        text += (f"The cache makes these {plural(n, 'token')} **{ratio:.1f}× faster**: a new token costs about "
                 f"{cached_ms:.1f} ms with it, and {uncached_ms:.1f} ms on average without it, growing with the text.")
    else:
        text += (f"Here the cache saved little ({ratio:.2f}×): with a short text most of the work is the output "
                 "layer (emb_dim × vocabulary), which the cache does not shorten; its gain grows with the length "
                 "of the text and the size of the model.")
    if timings.cache_positions:
        first, last = timings.cache_positions[0], timings.cache_positions[-1]
        text += (f" The cache filled up as it went: {plural(first, 'position')} after the prompt, "
                 f"{plural(last, 'position')} at the end (keys and values of every layer: "
                 f"{human_size(timings.cache_bytes)}).")
    return text


def measure_speed(model, idx: torch.Tensor, n_tokens: int, model_name: str = "") -> tuple[str, KVTimings]:
    """Time the KV cache on a prompt: (the Markdown summary, the timings for the plot)."""
    n_tokens = max(1, min(n_tokens, SPEED_TOKENS))
    timings = time_kv_cache(model, idx.tolist(), n_tokens)
    return speed_line(timings, model_name, plain=not is_fast(model)), timings


def measure_kv_speed(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT) -> str:
    """Time greedy generation after the prompt, token by token, with and without the KV cache: what was found,
    in a few sentences (what the endpoint /generate_speed returns)."""
    return kv_speed_test(choice, prompt)[0]


def kv_speed_test(choice=DEFAULT_CHOICE, prompt=DEFAULT_PROMPT) -> tuple[str, dict]:
    """Time greedy generation after the prompt, token by token, with and without the KV cache.

    Args:
        choice: the model (a label of the model menu).
        prompt: the text to continue.

    Returns:
        What was found in a few sentences: milliseconds per token with and without the cache, and the speed-up
        (the timings themselves go to the tab's plot).
    """
    prompt, notes = prompt_text(prompt)
    loaded = load_choice(choice)
    ids, prompt_notes = encode_prompt(loaded.tokenizer, prompt)
    ids, n_tokens, context_notes = fit_in_context(ids, SPEED_TOKENS, loaded.cfg.context_length)
    line, timings = measure_speed(loaded.model, torch.tensor(ids), n_tokens, loaded.label)
    return "\n\n".join([line, *[f"⚠ {note}" for note in notes + prompt_notes + context_notes]]), asdict(timings)


def speed_plot(timings: dict | None):
    """The plot of a speed test: ms per new token against the length of the text, and the cache filling."""
    if not timings:
        return gr.update(visible=False)
    figure = kv_speed_figure(timings["lengths"], [1000 * t for t in timings["cached_s"]],
                             [1000 * t for t in timings["uncached_s"]], timings["cache_positions"])
    return gr.update(value=figure, visible=True)


# ---------------------------------------------------------------------------------------------------------------
# Layout and wiring
# ---------------------------------------------------------------------------------------------------------------


EXAMPLE_PROMPTS = [
    "Every effort moves you",
    "ROMEO:\nBut soft, what light",
    "To be, or not to be",
    "First Citizen:\nWe are accounted poor citizens",
    "The king is dead, and",
    "Once upon a time",
]

# After the step slider moves or a run ends: scroll the text so the marked token is in view (a long text scrolls
# inside its box). Only the box scrolls, never the page.
SCROLL_TO_STEP_JS = """
() => {
  const chosen = document.querySelector('#generate-text [data-chosen]');
  if (!chosen) return;
  let box = chosen.parentElement;
  while (box && box !== document.body && box.scrollHeight <= box.clientHeight + 1) box = box.parentElement;
  if (!box || box === document.body) return;
  const offset = chosen.getBoundingClientRect().top - box.getBoundingClientRect().top;
  if (offset < 0 || offset > box.clientHeight - chosen.offsetHeight) {
    box.scrollTop += offset - box.clientHeight / 2;
  }
}
"""


def build_tab(model_choice: gr.Dropdown) -> None:
    with one_torch_thread():  # made once, while the page is built
        first_html, first_chart, first_status, first_steps, first_step, first_run, first_text = first_view(
            model_choice.value)
    explain(INTRO)
    with gr.Row():
        with gr.Column(scale=3):
            # One line: Enter generates (Shift+Enter adds a line; a pasted text keeps its lines).
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=1, max_lines=8, max_length=MAX_PROMPT_CHARS,
                                elem_id="generate-prompt")
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop")
                speed = gr.Button("Measure KV-cache speed")
            gr.Examples([[example] for example in EXAMPLE_PROMPTS], inputs=[prompt], label="Prompts to try",
                        api_visibility="private")
        with gr.Column(scale=2):
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="max new tokens")
            temperature = gr.Slider(0.0, MAX_TEMPERATURE, value=DEFAULT_TEMPERATURE, step=0.05,
                                    label="temperature (0 = greedy)")
            with gr.Row():
                top_k = gr.Number(DEFAULT_TOP_K, label="top-k (0 = off)", precision=0, minimum=0, maximum=MAX_TOP_K)
                top_p = gr.Number(DEFAULT_TOP_P, label="top-p (1 = off)", step=0.05, minimum=0, maximum=1)
                seed = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
    followed("generate", {"prompt": prompt, "max_new": max_new, "temperature": temperature, "top_k": top_k,
                         "top_p": top_p, "seed": seed})  # class mode: the teacher's settings
    status = gr.Markdown(first_status, label="status", elem_classes=["lab-note"], elem_id="generate-status")
    speed_note = gr.Markdown(label="KV-cache speed", elem_classes=["lab-note"], elem_id="generate-speed")
    speed_chart = gr.Plot(show_label=False, visible=False, elem_id="generate-speed-plot")
    speed_state = gr.State(None)  # the last speed test's timings, for its plot
    with gr.Row():
        with gr.Column(scale=3):
            # The box scrolls, not the HTML inside it: gr.HTML puts its classes on its block and on its content,
            # and a 420 px content in a 420 px block spilled over the slider below.
            with gr.Column(elem_classes=["lab-tokens", "lab-generation"], elem_id="generate-text-box"):
                text_html = gr.HTML(first_html, label="the text, token by token", show_label=False, padding=False, elem_id="generate-text",
                                    css_template="line-height: 2.1;")
            step = gr.Slider(1, max(first_steps, 2), value=first_step, step=1,
                             label="step (after a run: revisit any step)", interactive=True)
            with gr.Accordion("The generated text alone (to copy)", open=False):
                generated_text = gr.Textbox(first_text, label="generated text", interactive=False, lines=3,
                                            buttons=["copy"])
            with gr.Accordion("The result as data (prompt, text, token ids)", open=False):
                result = gr.JSON(label="Result")
        candidates_plot = gr.Plot(first_chart, label="the candidates at this step", show_label=False, scale=2, elem_id="generate-candidates")
    steps_state = gr.State(first_run)  # {"prompt": text, "steps": [(token, prob, candidates), ...]}
    show_source(generate, generation_loop, start_decoding, sample_next_token, next_token_probs, filter_logits,
                stream_generate)

    inputs = [model_choice, prompt, max_new, temperature, top_k, top_p, seed]
    outputs = [text_html, candidates_plot, status, step, steps_state, generated_text]
    # preprocess=False: the handlers get the values as sent and check each one themselves (number_input), so a
    # NaN, an infinity or a wrong type from an API client gets a plain message, not Gradio's or Python's wording.
    generation = {"fn": tool(explore_view(run_generation), "generate"), "inputs": inputs, "outputs": [*outputs, result],
                  "preprocess": False,
                  "concurrency_limit": GENERATE_AT_ONCE, "concurrency_id": "generate"}
    event = run.click(**generation, api_name="generate")
    event.then(None, js=SCROLL_TO_STEP_JS)
    submitted = prompt.submit(**generation, api_name=False)
    submitted.then(None, js=SCROLL_TO_STEP_JS)
    stop.click(None, None, None, cancels=[event, submitted], api_name=False)
    # The endpoint returns the summary only (the timings go to a State, which API clients do not get); the plot
    # is drawn from them by a second, private step.
    speed.click(tool(kv_speed_test, "generate_speed"), [model_choice, prompt], [speed_note, speed_state],
                api_name="generate_speed", preprocess=False, concurrency_limit=SPEED_AT_ONCE,
                concurrency_id="generate_speed").success(
        speed_plot, speed_state, speed_chart, api_name=False, queue=False)
    # Keys move the slider with `input` (no `release`); the mouse sends both. always_last: a drag sends only
    # its last value once the handler is free.
    for trigger in (step.release, step.input):
        trigger(friendly(show_step), [step, steps_state], [text_html, candidates_plot], api_name=False,
                preprocess=False, concurrency_limit=SHOW_STEP_AT_ONCE, concurrency_id="generate_step",
                trigger_mode="always_last").then(None, js=SCROLL_TO_STEP_JS)
    # For scripts and agents: the step replay of a generation, without the page's state.
    steps_data = gr.JSON(label="steps", visible=False)
    gr.Button(visible=False).click(tool(explore_view(generate_steps), "generate_steps"), [*inputs, step],
                                   [text_html, candidates_plot, steps_data], api_name="generate_steps",
                                   preprocess=False, concurrency_limit=GENERATE_AT_ONCE, concurrency_id="generate")
    # Another model: its view of the prompt (the next-token chart), the last model's run cleared.
    model_choice.change(preview_next_token, [model_choice, prompt, temperature, top_k, top_p], outputs,
                        api_name=False, preprocess=False, concurrency_limit=4, concurrency_id="generate_preview")
