"""Inside GPT tab: every attention head of the chosen model on the student's text, parameter counts,
memory and the token/position embeddings."""

from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from gpt_core.model import GPTModel, estimate_memory, parameter_breakdown
from ui.common import cap_text, explain, friendly, show_source
from ui.models import encode_capped, load_choice, token_strings
from visualizations.attention import head_figure
from visualizations.model import (
    attention_grid_figure,
    embedding_figure,
    memory_markdown,
    parameter_figure,
    position_norm_figure,
)

MAX_TOKENS = 64  # the layer x head grid stays small (under 1 MB) and readable up to here
MAX_CHARS = 5_000
EMBEDDING_DIMS = 32
DEFAULT_TEXT = "Every effort moves you forward, one small step at a time."

INTRO = """
### Inside GPT
Run the chosen model on your text and look at what it computes. Every small square is one attention head:
row = layer, column = head, and inside each square rows are the tokens that look (queries) and columns the
tokens they look at (keys); the upper-right triangle is empty because a GPT cannot look at the future.
Pick a layer and a head below to enlarge it. Further down: where the parameters are, how much memory the
model needs, and the vectors each token starts as (token embedding + position embedding).
"""


def capture(model: GPTModel, ids: list[int]) -> np.ndarray:
    """Attention weights of every layer and head for one text: (n_layers, n_heads, T, T), float16."""
    idx = torch.tensor([ids])  # (1, T)
    with torch.inference_mode():
        result = model.forward_with_capture(idx)
    attn = torch.stack([weights[0] for weights in result.attn_weights])  # (L, H, T, T)
    return attn.to(torch.float16).numpy()


def embeddings(model: GPTModel, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token embeddings (T, d), position embeddings (T, d), norm of every position embedding (context_length,))."""
    with torch.inference_mode():
        tok = model.tok_emb(torch.tensor(ids))  # (T, emb_dim)
        pos = model.pos_emb(torch.arange(len(ids)))  # (T, emb_dim)
        pos_norms = model.pos_emb.weight.norm(dim=-1)  # (context_length,)
    return tok.numpy(), pos.numpy(), pos_norms.numpy()


def look_inside(choice: str, text: str):
    """Everything the tab shows for one model and one text."""
    loaded = load_choice(choice)
    cfg = loaded.cfg
    text, char_note = cap_text(text, MAX_CHARS)
    limit = min(MAX_TOKENS, cfg.context_length)
    ids, token_note = encode_capped(loaded.tokenizer, text, limit)
    if token_note and cfg.context_length < MAX_TOKENS:
        token_note += f" (the model's context window is {cfg.context_length} tokens)"
    tokens = token_strings(loaded.tokenizer, ids)
    attn = capture(loaded.model, ids)
    n_layers, n_heads, n_tokens, _ = attn.shape
    note_lines = [
        f"**{loaded.label}**: {loaded.note}",
        f"{n_tokens} tokens · {n_layers} layers × {n_heads} heads · captured attention weights "
        f"({n_layers}, {n_heads}, {n_tokens}, {n_tokens}) = (layers, heads, queries, keys) · "
        f"emb_dim {cfg.emb_dim}, context window {cfg.context_length}",
    ]
    note_lines += [f"⚠ {note}" for note in (char_note, token_note) if note]

    breakdown = parameter_breakdown(cfg)
    total = sum(count for _, count in breakdown)
    table = [[name, f"{count:,}", f"{100 * count / total:.1f}%"] for name, count in breakdown]
    table.append(["total", f"{total:,}", "100%"])
    memory = "\n\n".join([
        memory_markdown(estimate_memory(cfg, torch.float32), "Using the model (float32 weights)"),
        memory_markdown(estimate_memory(cfg, torch.float32, training=True, batch_size=8),
                        f"Training it (float32, AdamW, batch 8 × {cfg.context_length} tokens)"),
    ])
    tok, pos, pos_norms = embeddings(loaded.model, ids)
    state = {"attn": attn, "tokens": tokens}
    layer, head = n_layers - 1, 0
    return (
        "\n\n".join(note_lines),
        attention_grid_figure(attn, tokens, f"Attention weights of all {n_layers * n_heads} heads (rows: layers, columns: heads)"),
        gr.update(maximum=n_layers - 1, value=layer),
        gr.update(maximum=n_heads - 1, value=head),
        enlarged_head(state, layer, head),
        table,
        parameter_figure(breakdown),
        memory,
        embedding_figure(tok, pos, tokens, EMBEDDING_DIMS,
                        f"The vectors your tokens start as: first {EMBEDDING_DIMS} of {cfg.emb_dim} dimensions"),
        position_norm_figure(pos_norms, n_tokens),
        state,
    )


def enlarged_head(state: dict | None, layer: int, head: int):
    """One head of the captured weights, with token labels."""
    if not state:
        raise ValueError("Press 'Look inside' first: there is no captured attention yet.")
    attn = state["attn"]
    layer = min(int(layer), attn.shape[0] - 1)
    head = min(int(head), attn.shape[1] - 1)
    weights = attn[layer, head].astype(np.float32)  # (T, T)
    return head_figure(weights, state["tokens"], f"layer {layer}, head {head}: weights {weights.shape}")


def build_tab(model_choice: gr.Dropdown) -> None:
    explain(INTRO)
    with gr.Row():
        text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=2, scale=4, max_length=MAX_CHARS)
        run = gr.Button("Look inside", variant="primary", scale=1)
    note = gr.Markdown(elem_classes=["lab-note"])
    grid = gr.Plot(show_label=False, elem_id="inside-grid")
    with gr.Row():
        layer = gr.Slider(0, 1, value=0, step=1, label="layer")
        head = gr.Slider(0, 1, value=0, step=1, label="head")
    head_plot = gr.Plot(show_label=False, elem_id="inside-head")
    with gr.Row():
        with gr.Column():
            params = gr.Dataframe(headers=["component", "parameters", "share"], label="parameters",
                                  interactive=False)
            memory = gr.Markdown()
        params_plot = gr.Plot(show_label=False)
    embed_plot = gr.Plot(show_label=False)
    pos_plot = gr.Plot(show_label=False)
    state = gr.State(None)
    show_source(GPTModel.forward_with_capture, GPTModel.embed, parameter_breakdown, estimate_memory)

    outputs = [note, grid, layer, head, head_plot, params, params_plot, memory, embed_plot, pos_plot, state]
    run.click(friendly(look_inside), [model_choice, text], outputs, api_name="inside",
              concurrency_limit=2, concurrency_id="model_forward")
    text.submit(friendly(look_inside), [model_choice, text], outputs, api_name=False,
                concurrency_limit=2, concurrency_id="model_forward")
    for slider in (layer, head):
        slider.release(friendly(enlarged_head), [state, layer, head], head_plot, api_name=False,
                       concurrency_limit=8)
