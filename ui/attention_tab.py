"""Attention tab: the ladder of chapter 3 on the student's own sentence.

simple dot products -> trainable queries/keys/values -> causal mask (+ dropout) -> two heads.
"""

from __future__ import annotations

import functools

import gradio as gr
import torch

from gpt_core.attention import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttention,
    attention_steps,
    simple_attention,
)
from ui.common import cap_text, explain, friendly, show_source
from ui.models import encode_capped, gpt2_tokenizer, token_strings
from visualizations.attention import Panel, masked_cells, panels_figure

MAX_TOKENS = 24  # the matrices stay readable up to about this many tokens
MAX_CHARS = 2_000
SEED = 123
DEFAULT_TEXT = "Your journey starts with one step"

INTRO = """
### Attention, one rung at a time
Each token of your sentence becomes a small vector (random but fixed, seed 123, 3 numbers like the book).
**Scores** say how well a query token matches every key token; **softmax** turns each row of scores into
**weights** that add up to 1; each output (context vector) is the weighted sum of the value vectors.
Rows are the tokens that look (queries), columns the tokens they look at (keys).
Grey × cells are **masked** (the future, hidden from the query); dark × cells were **dropped** by dropout.
"""


@functools.cache
def embedding_table(dim: int) -> torch.Tensor:
    """(vocab_size, dim) random vectors in [0, 1), rounded to 2 decimals like the book's `inputs`; seed 123."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.rand(gpt2_tokenizer().vocab_size, dim, generator=generator).round(decimals=2)


def shape(tensor: torch.Tensor) -> str:
    """
    >>> shape(torch.zeros(6, 2))
    '(6, 2)'
    """
    return "(" + ", ".join(str(size) for size in tensor.shape) + ")"


def build_module(cls, *args, **kwargs) -> torch.nn.Module:
    """Every rung starts from seed 123, so rung 2 and rung 3 share the same W_query, W_key, W_value."""
    torch.manual_seed(SEED)
    return cls(*args, **kwargs).eval()


def apply_dropout(weights: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """What training does to the weights: zero a random `rate` of them, scale the rest by 1 / (1 - rate).

    Returns (weights after dropout, True where a non-zero weight was dropped).
    """
    torch.manual_seed(SEED)
    dropped_weights = torch.nn.Dropout(rate).train()(weights)
    return dropped_weights, (dropped_weights == 0) & (weights > 0)


def rung_simple(inputs, tokens):
    attn_scores = inputs @ inputs.T  # (T, T)
    attn_weights, context_vecs = simple_attention(inputs)
    text = (f"**1 · Simple attention** (no trainable weights): inputs {shape(inputs)} · inputsᵀ "
            f"{shape(inputs.T)} = scores {shape(attn_scores)} → softmax per row → weights {shape(attn_weights)}; "
            f"weights · inputs = context {shape(context_vecs)}")
    figure = panels_figure([Panel("scores = inputs · inputsᵀ", attn_scores.numpy(), "scores"),
                            Panel("weights = softmax(scores)", attn_weights.numpy())], tokens)
    return text, figure


def rung_self_attention(inputs, tokens, d_out):
    module = build_module(SelfAttention, inputs.shape[-1], d_out)
    steps = attention_steps(module, inputs, causal=False)
    text = (f"**2 · Self-attention with Q, K, V**: W_query {shape(module.W_query.weight.T)} turns inputs "
            f"{shape(inputs)} into queries {shape(steps.queries)}; queries {shape(steps.queries)} · keysᵀ "
            f"{shape(steps.keys.T)} = scores {shape(steps.scores)}; softmax(scores / √{d_out}) = weights "
            f"{shape(steps.weights)}; weights · values {shape(steps.values)} = context {shape(steps.context)}")
    figure = panels_figure([Panel("scores = queries · keysᵀ", steps.scores.numpy(), "scores"),
                            Panel(f"weights = softmax(scores / √{d_out})", steps.weights.numpy())], tokens)
    return text, figure


def rung_causal(inputs, tokens, d_out, causal, dropout_rate):
    module = build_module(CausalAttention, inputs.shape[-1], d_out, len(tokens), dropout_rate)
    steps = attention_steps(module, inputs, causal=causal)
    masked = masked_cells(steps.masked_scores.numpy())  # True above the diagonal when causal
    panels = [Panel("scores, future masked (-∞)" if causal else "scores (mask off)", steps.masked_scores.numpy(),
                    "scores"),
              Panel("weights", steps.weights.numpy(), masked=masked)]
    text = (f"**3 · Causal attention** (same W matrices as rung 2): scores {shape(steps.scores)} with the "
            f"{(len(tokens) * (len(tokens) - 1)) // 2} cells above the diagonal set to -∞, so softmax gives them "
            f"weight 0 and each row still sums to 1." if causal else
            "**3 · Causal attention, mask switched off**: every token sees the future too (what a GPT must not do).")
    if dropout_rate > 0:
        dropped_weights, dropped = apply_dropout(steps.weights, dropout_rate)
        panels.append(Panel(f"after dropout p={dropout_rate:g} (kept × {1 / (1 - dropout_rate):.2f})",
                            dropped_weights.numpy(), masked=masked, dropped=dropped.numpy()))
        text += (f" Dropout (training only) zeroed {int(dropped.sum())} weights and scaled the rest by "
                 f"1 / (1 - {dropout_rate:g}).")
    return text, panels_figure(panels, tokens)


def rung_multi_head(inputs, tokens, d_out, causal):
    num_heads = 2
    wrapper = build_module(MultiHeadAttentionWrapper, inputs.shape[-1], d_out, len(tokens), 0.0, num_heads)
    panels, contexts = [], []
    for index, head in enumerate(wrapper.heads):
        steps = attention_steps(head, inputs, causal=causal)
        contexts.append(steps.context)
        masked = masked_cells(steps.masked_scores.numpy())
        panels += [Panel(f"head {index}: scores", steps.masked_scores.numpy(), "scores"),
                   Panel(f"head {index}: weights", steps.weights.numpy(), masked=masked)]
    context = torch.cat(contexts, dim=-1)
    text = (f"**4 · Multi-head attention** ({num_heads} heads): each head has its own W_query/W_key/W_value, so "
            f"it scores the tokens differently; each head gives context {shape(contexts[0])}, concatenated: "
            f"context {shape(context)} = (tokens, {num_heads} heads × {d_out}).")
    return text, panels_figure(panels, tokens, columns=2)


def attention_ladder(text: str, dim: int, d_out: int, causal: bool, use_dropout: bool, dropout_rate: float):
    """All four rungs for the text: (note, inputs table, then text + figure per rung)."""
    text, char_note = cap_text(text, MAX_CHARS)
    tokenizer = gpt2_tokenizer()
    ids, token_note = encode_capped(tokenizer, text, MAX_TOKENS)
    tokens = token_strings(tokenizer, ids)
    dim, d_out = int(dim), int(d_out)
    inputs = embedding_table(dim)[ids]  # (T, dim)
    notes = [note for note in (char_note, token_note) if note]
    note = f"{len(ids)} tokens → inputs {shape(inputs)} (one {dim}-number vector per token)."
    if notes:
        note = " ".join(notes) + " " + note
    table = [[f"{i}: {tok!r}", *[round(float(v), 2) for v in row]] for i, (tok, row) in enumerate(zip(tokens, inputs))]
    rate = float(dropout_rate) if use_dropout else 0.0
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"The dropout rate must be between 0 and 1 (1 excluded), got {rate}.")
    with torch.inference_mode():
        rungs = [rung_simple(inputs, tokens), rung_self_attention(inputs, tokens, d_out),
                 rung_causal(inputs, tokens, d_out, causal, rate), rung_multi_head(inputs, tokens, d_out, causal)]
    outputs = [note, gr.update(value=table, headers=["token", *[f"dim {i}" for i in range(dim)]])]
    for rung_text, figure in rungs:
        outputs += [rung_text, figure]
    return tuple(outputs)


def build_tab() -> None:
    explain(INTRO)
    with gr.Row():
        text = gr.Textbox(DEFAULT_TEXT, label="Sentence", lines=2, scale=3, max_length=MAX_CHARS)
        with gr.Column(scale=2):
            dim = gr.Slider(2, 8, value=3, step=1, label="embedding size d_in (the book uses 3)")
            d_out = gr.Slider(1, 4, value=2, step=1, label="query/key/value size d_out (the book uses 2)")
    with gr.Row():
        causal = gr.Checkbox(True, label="causal mask (hide the future)")
        use_dropout = gr.Checkbox(False, label="dropout (as in training)")
        dropout_rate = gr.Slider(0.0, 0.9, value=0.5, step=0.1, label="dropout rate")
        run = gr.Button("Show attention", variant="primary")
    note = gr.Markdown(elem_classes=["lab-note"])
    inputs_table = gr.Dataframe(label="inputs: one vector per token", interactive=False, max_height=260)
    outputs = [note, inputs_table]
    for rung in range(1, 5):
        outputs.append(gr.Markdown())
        outputs.append(gr.Plot(show_label=False, elem_id=f"attention-rung-{rung}"))
    show_source(simple_attention, SelfAttention, CausalAttention, MultiHeadAttentionWrapper, attention_steps)

    handler = friendly(attention_ladder)
    controls = [text, dim, d_out, causal, use_dropout, dropout_rate]
    run.click(handler, controls, outputs, api_name="attention", concurrency_limit=8)
    text.submit(handler, controls, outputs, api_name=False, concurrency_limit=8)
    for control in (dim, d_out):
        control.release(handler, controls, outputs, api_name=False, concurrency_limit=8)
    for control in (causal, use_dropout):
        control.input(handler, controls, outputs, api_name=False, concurrency_limit=8)
    dropout_rate.release(handler, controls, outputs, api_name=False, concurrency_limit=8)
