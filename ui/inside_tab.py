"""Inside GPT tab: every attention head of the chosen model on the student's text, parameter counts,
memory and the token/position embeddings.

Serving a class: thirty students often look at the same sentence, so a finished view is kept in a small
ResultCache (keyed by model and text) with its figures already turned into the JSON the browser gets. The
first student pays for the forward pass and the figures (about 0.1 s); the others get a dictionary look-up.
The view of the default text is made when the server builds the page and is every visitor's first view;
picking another model redraws the tab.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
from gradio.components.plot import PlotData

from gpt_core.attention import MultiHeadAttention
from gpt_core.model import GPTModel, TransformerBlock, estimate_memory, parameter_breakdown
from ui.common import cap_text, explain, friendly, number_input, plural, show_source
from ui.models import encode_capped, load_choice, one_torch_thread, token_strings
from ui.runs import explore_view
from ui.view_cache import ResultCache, plot_value
from visualizations.attention import head_figure
from visualizations.generation import visible_token
from visualizations.model import (
    attention_grid_figure,
    embedding_figure,
    memory_markdown,
    parameter_figure,
    position_norm_figure,
)

MAX_TOKENS = 64  # the layer x head grid stays small (under 1 MB) and readable up to here
MAX_CHARS = 2_000  # 64 tokens are about 300 characters; the from-scratch encoder gets slow on very long words
EMBEDDING_DIMS = 32
DEFAULT_TEXT = "Every effort moves you forward, one small step at a time."
CACHED_VIEWS = 64  # at most this many (model, text) views are kept ...
CACHED_VIEW_BYTES = 64 * 2**20  # ... and 64 MB (64 tokens: 0.4 MB for the bundled model, 2.5 MB for GPT-2 small)

INTRO = """
### Inside GPT
Run the chosen model on your text and look at what it computes. Every small square is one attention head:
row = layer, column = head, and inside each square rows are the tokens that look (queries) and columns the
tokens they look at (keys); the upper-right triangle is empty because a GPT cannot look at the future.
Pick a layer and a head below to enlarge it (drag the sliders or use the arrow keys). Further down: where the
parameters are, how much memory the model needs, and the vectors each token starts as (token embedding +
position embedding). Tokens are written as in the Tokenizer tab: `·` is a space, `↵` a new line.
"""


# ---------------------------------------------------------------------------------------------------------------
# The view
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ModelFacts:
    """What the tab shows about a model whatever the text: computed once per model."""

    table: list[list[str]]
    parameters: PlotData
    memory: str


@dataclass
class InsideView:
    """Everything the tab shows for one model and one text, figures ready to send."""

    note: str
    grid: PlotData
    n_layers: int
    n_heads: int
    head: PlotData
    facts: ModelFacts
    embeddings: PlotData
    positions: PlotData
    state: dict  # {"attn": (layers, heads, T, T) float16, "tokens": [...]}: what the layer/head sliders read


VIEWS = ResultCache(CACHED_VIEWS, CACHED_VIEW_BYTES)
FACTS = ResultCache(16, 2**20)


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


TIED_HEAD = "shared with the token embedding (weight tying)"


def share(name: str, count: int, total: int, tied: bool) -> str:
    """The share column of the parameter table; a tied output head says where its weights are.

    >>> share("output head", 0, 1000, tied=True)
    'shared with the token embedding (weight tying)'
    >>> share("layer norms", 25, 1000, tied=True)
    '2.5%'
    """
    if tied and name == "output head":
        return TIED_HEAD
    return f"{100 * count / total:.1f}%"


def model_facts(loaded) -> ModelFacts:
    """The parameter table and chart and the memory estimates of a model (cached per model)."""
    facts = FACTS.get(loaded.label, owner=loaded.model)
    if facts is not None:
        return facts
    cfg = loaded.cfg
    breakdown = parameter_breakdown(cfg)
    total = sum(count for _, count in breakdown)
    table = [[name, f"{count:,}", share(name, count, total, cfg.tie_weights)] for name, count in breakdown]
    table.append(["total", f"{total:,}", "100%"])
    memory = "\n\n".join([
        memory_markdown(estimate_memory(cfg, torch.float32), "Using the model (float32 weights)"),
        memory_markdown(estimate_memory(cfg, torch.float32, training=True, batch_size=8),
                        f"Training it (float32, AdamW, batch 8 × {cfg.context_length} tokens)"),
    ])
    notes = {"output head": "0: uses the token embedding's weights"} if cfg.tie_weights else {}
    facts = ModelFacts(table, plot_value(parameter_figure(breakdown, notes)), memory)
    FACTS.put(loaded.label, facts, owner=loaded.model)
    return facts


def build_view(loaded, text: str, char_note: str | None) -> InsideView:
    """Run the model on `text` and draw everything (the slow path: a forward pass and five figures)."""
    cfg = loaded.cfg
    limit = min(MAX_TOKENS, cfg.context_length)
    ids, token_note = encode_capped(loaded.tokenizer, text, limit)
    if token_note and cfg.context_length < MAX_TOKENS:
        token_note += f" (the model's context window is {cfg.context_length} tokens)"
    tokens = [visible_token(token) for token in token_strings(loaded.tokenizer, ids)]  # '·the', as the Tokenizer
    attn = capture(loaded.model, ids)
    n_layers, n_heads, n_tokens, _ = attn.shape
    note_lines = [
        f"**{loaded.label}**: {loaded.note}",
        f"{plural(n_tokens, 'token')} · {n_layers} layers × {n_heads} heads · captured attention weights "
        f"({n_layers}, {n_heads}, {n_tokens}, {n_tokens}) = (layers, heads, queries, keys) · "
        f"emb_dim {cfg.emb_dim}, context window {cfg.context_length}",
    ]
    note_lines += [f"⚠ {note}" for note in (char_note, token_note) if note]
    tok, pos, pos_norms = embeddings(loaded.model, ids)
    state = {"attn": attn, "tokens": tokens}
    grid_title = f"Attention weights of all {n_layers * n_heads} heads (rows: layers, columns: heads)"
    embedding_title = f"The vectors your tokens start as: first {EMBEDDING_DIMS} of {cfg.emb_dim} dimensions"
    return InsideView(
        note="\n\n".join(note_lines),
        grid=plot_value(attention_grid_figure(attn, tokens, grid_title)),
        n_layers=n_layers,
        n_heads=n_heads,
        head=plot_value(head_plot(state, n_layers - 1, 0)),
        facts=model_facts(loaded),
        embeddings=plot_value(embedding_figure(tok, pos, tokens, EMBEDDING_DIMS, embedding_title)),
        positions=plot_value(position_norm_figure(pos_norms, n_tokens)),
        state=state,
    )


def inside_view(choice: str, text: str) -> InsideView:
    """The view of one model and one text (from the cache when someone asked before)."""
    loaded = load_choice(choice)
    if text is not None and not isinstance(text, str):
        raise ValueError(f"The text must be a string of characters, not {type(text).__name__}.")
    text, char_note = cap_text(text, MAX_CHARS)
    key = (loaded.label, text)
    view = VIEWS.get(key, owner=loaded.model)
    if view is None:
        view = build_view(loaded, text, char_note)
        VIEWS.put(key, view, owner=loaded.model)
    return view


def look_inside(choice: str, text: str):
    """Everything the tab shows for one model and one text (from the cache when someone asked before)."""
    view = inside_view(choice, text)
    return (
        view.note,
        view.grid,
        gr.update(maximum=view.n_layers - 1, value=view.n_layers - 1),
        gr.update(maximum=view.n_heads - 1, value=0),
        view.head,
        view.facts.table,
        view.facts.parameters,
        view.facts.memory,
        view.embeddings,
        view.positions,
        view.state,
    )


def head_plot(state: dict, layer: int, head: int):
    """The figure of one head of the captured weights, with token labels."""
    weights = state["attn"][layer, head].astype(np.float32)  # (T, T)
    return head_figure(weights, state["tokens"], f"layer {layer}, head {head}: weights {weights.shape}")


def enlarged_head(state: dict | None, layer=None, head=None):
    """One head of the captured weights, chosen with the layer and head sliders."""
    if not state:
        raise ValueError("Press 'Look inside' first: there is no captured attention yet.")
    n_layers, n_heads = state["attn"].shape[:2]
    layer = number_input(layer, "The layer", minimum=0, maximum=n_layers - 1, whole=True, default=n_layers - 1)
    head = number_input(head, "The head", minimum=0, maximum=n_heads - 1, whole=True, default=0)
    return plot_value(head_plot(state, layer, head))


def build_tab(model_choice: gr.Dropdown) -> None:
    with one_torch_thread():  # every visitor's first view, made once per server while the page is built
        first = inside_view(model_choice.value, DEFAULT_TEXT)
    explain(INTRO)
    with gr.Row():
        # One line: Enter looks inside.
        text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=1, max_lines=4, scale=4, max_length=MAX_CHARS,
                          elem_id="inside-text")
        run = gr.Button("Look inside", variant="primary", scale=1)
    note = gr.Markdown(first.note, elem_classes=["lab-note"])
    grid = gr.Plot(first.grid, show_label=False, elem_id="inside-grid")
    with gr.Row():
        layer = gr.Slider(0, first.n_layers - 1, value=first.n_layers - 1, step=1, label="layer",
                          elem_id="inside-layer")
        head = gr.Slider(0, first.n_heads - 1, value=0, step=1, label="head", elem_id="inside-head-slider")
    head_plot_view = gr.Plot(first.head, show_label=False, elem_id="inside-head")
    with gr.Row():
        with gr.Column():
            params = gr.Dataframe(first.facts.table, headers=["component", "parameters", "share"],
                                  label="parameters", interactive=False, wrap=True, elem_id="inside-params",
                                  column_widths=["34%", "22%", "44%"])
            memory = gr.Markdown(first.facts.memory)
        params_plot = gr.Plot(first.facts.parameters, show_label=False)
    embed_plot = gr.Plot(first.embeddings, show_label=False)
    pos_plot = gr.Plot(first.positions, show_label=False)
    state = gr.State(first.state)
    show_source(GPTModel.forward, GPTModel.embed, TransformerBlock.forward, MultiHeadAttention.forward,
                GPTModel.forward_with_capture, parameter_breakdown, estimate_memory)

    outputs = [note, grid, layer, head, head_plot_view, params, params_plot, memory, embed_plot, pos_plot, state]
    # Concurrency by cost: a cached view costs ~1 ms, a new one a forward pass (0.05-0.5 s, torch uses both
    # cores), so 4 at once; the head slider only redraws one small figure, so it has its own queue.
    inside_event = {"fn": friendly(explore_view(look_inside)), "inputs": [model_choice, text], "outputs": outputs,
                    "concurrency_limit": 4, "concurrency_id": "inside"}
    run.click(**inside_event, api_name="inside")
    text.submit(**inside_event, api_name=False)
    model_choice.change(**inside_event, api_name=False)  # another model: its view of the same text
    for slider in (layer, head):
        # The mouse sends `input` while dragging and `release` at the end; the arrow keys send `input` only.
        # always_last: a fast drag redraws with its last value, not every value it passed.
        # preprocess=False: the handler checks the numbers itself (number_input), so NaN, infinity or a word
        # from an API client gets a plain message.
        for trigger in (slider.release, slider.input):
            trigger(friendly(enlarged_head), [state, layer, head], head_plot_view, api_name=False,
                    preprocess=False, concurrency_limit=8, concurrency_id="inside_head", trigger_mode="always_last")
