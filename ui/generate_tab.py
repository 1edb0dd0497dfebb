"""Generate tab: the chosen model continues a prompt token by token, showing what it considered each step."""

from __future__ import annotations

import time

import gradio as gr
import torch

from gpt_core.generate import filter_logits, generate, next_token_probs, stream_generate
from ui.common import cap_text, explain, friendly, show_source
from ui.models import load_choice
from visualizations.generation import candidates_figure, generation_html

MAX_NEW_TOKENS = 200
MAX_PROMPT_CHARS = 5_000
SPEED_TOKENS = 24  # new tokens timed with and without the KV cache
TOP_N = 10
DEFAULT_PROMPT = "Every effort moves you"

INTRO = """
### Generate
The model reads your prompt and gives a probability to every token of its vocabulary; one is picked,
appended, and the loop starts again. **Temperature** sharpens (< 1) or flattens (> 1) the probabilities;
0 means *greedy*: always the most likely token. **Top-k** keeps only the k most likely tokens, **top-p**
the smallest set whose probabilities add up to p. The **seed** makes sampling repeatable.
The **KV cache** keeps each layer's keys and values so a new token costs one position of work, not the
whole text again: the speeds of both are measured at the end.
"""


def sampling_settings(temperature: float, top_k: float | None, top_p: float | None, vocab_size: int):
    """Check the sliders and turn them into generate()'s arguments: (temperature, top_k, top_p, notes).

    >>> sampling_settings(0, 0, 1.0, 50257)
    (0.0, None, None, ['Temperature 0: greedy decoding, always the most likely token (the seed does not matter).'])
    """
    notes = []
    temperature = float(temperature or 0.0)
    if temperature <= 0:
        temperature = 0.0
        notes.append("Temperature 0: greedy decoding, always the most likely token (the seed does not matter).")
    top_p = 1.0 if top_p is None else float(top_p)
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top-p must be more than 0 and at most 1 (a share of the probability to keep); "
                         f"got {top_p:g}. Use 1 to switch it off.")
    top_k = int(top_k or 0)
    if top_k < 0:
        raise ValueError(f"top-k must be 0 (off) or a positive number of tokens; got {top_k}.")
    if top_k > vocab_size:
        notes.append(f"top-k {top_k:,} is more than the vocabulary ({vocab_size:,} tokens): using {vocab_size:,}, "
                     f"which keeps every token.")
        top_k = vocab_size
    return temperature, (top_k or None), (top_p if top_p < 1.0 else None), notes


def tokens_per_second(model, idx: torch.Tensor, n_tokens: int, use_cache: bool) -> float:
    """Time greedy generation of n_tokens new tokens."""
    start = time.perf_counter()
    out = generate(model, idx, n_tokens, use_cache=use_cache)
    elapsed = time.perf_counter() - start
    return (out.shape[-1] - idx.shape[-1]) / max(elapsed, 1e-9)


def measure_speed(model, idx: torch.Tensor, n_tokens: int) -> str:
    """Cached vs uncached tokens/s on the same prompt (after a warm-up; best of 3 runs each, interleaved)."""
    n_tokens = max(1, min(n_tokens, SPEED_TOKENS))
    generate(model, idx, 2, use_cache=True)  # warm-up: first calls allocate memory
    cached, uncached = [], []
    for _ in range(3):
        cached.append(tokens_per_second(model, idx, n_tokens, use_cache=True))
        uncached.append(tokens_per_second(model, idx, n_tokens, use_cache=False))
    fast, slow = max(cached), max(uncached)
    text = (f"**Speed** ({n_tokens} greedy tokens after your {idx.shape[-1]}-token prompt, best of 3): "
            f"with KV cache **{fast:,.0f} tokens/s**, without **{slow:,.0f} tokens/s** "
            f"(the cache runs at {fast / slow:.2f}× the speed).")
    if fast < 1.3 * slow:
        text += (" With a short text, most of the work is the output layer (emb_dim × vocabulary), so the cache "
                 "saves little; its gain grows with the length of the text and the size of the model.")
    return text


def prepare(choice: str, prompt: str, max_new_tokens: float, temperature, top_k, top_p):
    """Load the model and check the settings: (loaded, prompt ids, max_new_tokens, sampling args, notes)."""
    prompt, char_note = cap_text(prompt, MAX_PROMPT_CHARS, "prompt")
    if not prompt or not prompt.strip():
        raise ValueError("Type a prompt first: the box is empty.")
    loaded = load_choice(choice)
    temperature, top_k, top_p, notes = sampling_settings(temperature, top_k, top_p, loaded.cfg.vocab_size)
    notes = ([char_note] if char_note else []) + notes
    ids = loaded.tokenizer.encode(prompt)
    context_length = loaded.cfg.context_length
    max_new_tokens = max(1, min(int(max_new_tokens), MAX_NEW_TOKENS))
    keep = context_length - max_new_tokens
    if keep < 1:
        keep = 1
        max_new_tokens = context_length - 1
        notes.append(f"The model reads at most {context_length} tokens: generating {max_new_tokens} new ones.")
    if len(ids) > keep:
        notes.append(f"Your prompt has {len(ids):,} tokens; keeping the last {keep} so that prompt + new tokens fit "
                     f"in the model's {context_length}-token context window.")
        ids = ids[-keep:]
    return loaded, ids, max_new_tokens, (temperature, top_k, top_p), notes




def run_generation(choice, prompt, max_new_tokens, temperature, top_k, top_p, seed):
    """Stream (text html, candidates plot, status, step slider, steps state) after every token."""
    loaded, ids, max_new_tokens, (temperature, top_k, top_p), notes = prepare(
        choice, prompt, max_new_tokens, temperature, top_k, top_p)
    tokenizer = loaded.tokenizer
    prompt_text = tokenizer.decode(ids)
    settings = (f"temperature {temperature:g}" if temperature > 0 else "greedy") + \
        (f" · top-k {top_k}" if top_k else "") + (f" · top-p {top_p:g}" if top_p else "") + \
        (f" · seed {int(seed)}" if temperature > 0 else "")
    steps = []  # per step: (token text, prob, [(candidate text, prob)])
    header = "\n\n".join([f"**{loaded.label}** · {settings} · prompt {len(ids)} tokens", *[f"⚠ {n}" for n in notes]])
    idx = torch.tensor(ids)
    stream = stream_generate(
        loaded.model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        seed=int(seed or 0), eos_id=None, top_n=TOP_N, use_cache=True)
    for step in stream:
        token = tokenizer.decode([step.token_id])
        candidates = [(tokenizer.decode([token_id]), prob) for token_id, prob in step.candidates]
        steps.append((token, step.prob, candidates))
        yield (
            generation_html(prompt_text, [s[0] for s in steps], [s[1] for s in steps], highlight=len(steps)),
            candidates_figure(candidates, token, len(steps), TOP_N, step.prob),
            f"{header}\n\nGenerating… {len(steps)} / {max_new_tokens} tokens",
            gr.update(),
            {"prompt": prompt_text, "steps": steps},
        )
    speed = measure_speed(loaded.model, idx, max_new_tokens)
    last = len(steps)
    yield (
        gr.update(),
        gr.update(),
        f"{header}\n\nGenerated {last} tokens. Move the step slider to see what the model considered at any "
        f"step.\n\n{speed}",
        gr.update(minimum=1, maximum=max(last, 2), value=last, interactive=True),
        {"prompt": prompt_text, "steps": steps},
    )


def show_step(step: float, run: dict | None):
    """Revisit one step after the run: the text with that token marked, and its candidates."""
    if not run or not run["steps"]:
        raise ValueError("Generate some text first: there are no steps to show yet.")
    steps = run["steps"]
    step = max(1, min(int(step), len(steps)))
    token, prob, candidates = steps[step - 1]
    html = generation_html(run["prompt"], [s[0] for s in steps], [s[1] for s in steps], highlight=step)
    return html, candidates_figure(candidates, token, step, TOP_N, prob)


def build_tab(model_choice: gr.Dropdown) -> None:
    explain(INTRO)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS)
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop")
        with gr.Column(scale=2):
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=30, step=1, label="max new tokens")
            temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="temperature (0 = greedy)")
            with gr.Row():
                top_k = gr.Number(40, label="top-k (0 = off)", precision=0, minimum=None)
                top_p = gr.Number(1.0, label="top-p (1 = off)", step=0.05)
                seed = gr.Number(123, label="seed", precision=0)
    status = gr.Markdown(elem_classes=["lab-note"])
    with gr.Row():
        with gr.Column(scale=3):
            text_html = gr.HTML(label="text")
            step = gr.Slider(1, 2, value=1, step=1, label="step (after a run: revisit any step)", interactive=False)
        candidates_plot = gr.Plot(show_label=False, scale=2, elem_id="generate-candidates")
    steps_state = gr.State(None)  # {"prompt": text, "steps": [(token, prob, candidates), ...]}
    show_source(stream_generate, next_token_probs, filter_logits, generate)

    inputs = [model_choice, prompt, max_new, temperature, top_k, top_p, seed]
    outputs = [text_html, candidates_plot, status, step, steps_state]
    event = run.click(friendly(run_generation), inputs, outputs, api_name="generate",
                      concurrency_limit=2, concurrency_id="generate")
    stop.click(None, None, None, cancels=[event], api_name=False)
    step.release(friendly(show_step), [step, steps_state], [text_html, candidates_plot],
                 api_name=False, concurrency_limit=8)

