"""Inside GPT tab: every attention head of the chosen model on the student's text, parameter counts,
memory and the token/position embeddings; then the logit lens (each layer's guess for the next token) and
knocking out a head or a layer (gpt_core.lens).

Serving a class: thirty students often look at the same sentence, so a finished view is kept in a small
ResultCache (keyed by model and text) with its figures already turned into the JSON the browser gets. The
first student pays for the forward pass and the figures (about 0.1 s); the others get a dictionary look-up.
The view of the default text is made when the server builds the page and is every visitor's first view;
picking another model redraws the tab. The logit lens's numbers (top 5 per layer and position) are cached
the same way; the knock-out results are cached per model, text, layer, head and part.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
from gradio.components.plot import PlotData

from gpt_core.attention import MultiHeadAttention
from gpt_core.lens import knocked_out, knockout_effect, logit_lens, pass_through_hook, zero_heads_hook
from gpt_core.model import GPTModel, TransformerBlock, estimate_memory, parameter_breakdown
from ui.api import tool
from ui.common import cap_text, explain, friendly, number_input, plural, show_source
from ui.follow import followed
from ui.models import DEFAULT_CHOICE, encode_capped, load_choice, one_torch_thread, token_strings
from ui.runs import explore_view
from ui.view_cache import ResultCache, plot_value
from visualizations.attention import head_figure
from visualizations.generation import visible_token
from visualizations.lens import knockout_figure, lens_figure
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
LENS_TOP_K = 5  # the hover of a lens cell lists this many guesses
LENS_COLUMNS = 16  # positions shown at once: ~65 px a cell on a 1,200 px page, room for 7 characters
KNOCKOUT_BARS = 10
ONE_HEAD, WHOLE_LAYER, NOTHING = "one head", "the whole layer", "nothing (the intact model)"
KNOCKOUT_PARTS = (ONE_HEAD, WHOLE_LAYER, NOTHING)

INTRO = """
### Inside GPT
Run the chosen model on your text and look at what it computes. Every small square is one attention head:
row = layer, column = head, and inside each square rows are the tokens that look (queries) and columns the
tokens they look at (keys); the upper-right triangle is empty because a GPT cannot look at the future.
Pick a layer and a head below to enlarge it (drag the sliders or use the arrow keys). Further down: where the
parameters are, how much memory the model needs, and the vectors each token starts as (token embedding +
position embedding). Tokens are written as in the Tokenizer tab: `·` is a space, `↵` a new line.
"""

LENS_INTRO = """
### Logit lens: what would the model say if it stopped after each layer?
Each row sends the hidden state after that layer through the model's final LayerNorm and output head, as if
the model stopped there: a cell is that layer's best guess for the token after its column (darker = surer,
**bold** = the text's real next token, hover for the top 5). The slider picks the last of the 16 tokens shown.
"""

KNOCKOUT_INTRO = """
### Knock-out: switch one head or a whole layer off
A knocked-out head outputs zeros; a knocked-out layer passes its input on unchanged. The bars compare the
next-token probabilities after your text's last token with and without that part: if they move a lot, the
part mattered for this text. **Reset** shows the intact model again.
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
    """(token embeddings (T, d), position embeddings (T, d), norm of every position embedding (context_length,)).

    A model trained without position embeddings (the no-pos-embedding switch) has none: zeros, as it adds nothing.
    """
    with torch.inference_mode():
        tok = model.tok_emb(torch.tensor(ids))  # (T, emb_dim)
        if model.pos_emb is None:
            return tok.numpy(), np.zeros_like(tok.numpy()), np.zeros(model.cfg.context_length, dtype=np.float32)
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


def checked_text(text) -> tuple[str, str | None]:
    """The text box's value, cut to MAX_CHARS characters, with a note when it was cut."""
    if text is not None and not isinstance(text, str):
        raise ValueError(f"The text must be a string of characters, not {type(text).__name__}.")
    return cap_text(text, MAX_CHARS)


def text_ids(loaded, text: str) -> tuple[list[int], str | None]:
    """The first MAX_TOKENS token ids of `text` (fewer if the model's context is shorter), with a note when cut."""
    cfg = loaded.cfg
    ids, token_note = encode_capped(loaded.tokenizer, text, min(MAX_TOKENS, cfg.context_length))
    if token_note and cfg.context_length < MAX_TOKENS:
        token_note += f" (the model's context window is {cfg.context_length} tokens)"
    return ids, token_note


def build_view(loaded, text: str, char_note: str | None) -> InsideView:
    """Run the model on `text` and draw everything (the slow path: a forward pass and five figures)."""
    cfg = loaded.cfg
    ids, token_note = text_ids(loaded, text)
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
    text, char_note = checked_text(text)
    return VIEWS.get_or_make((loaded.label, text), lambda: build_view(loaded, text, char_note), owner=loaded.model)


def look_inside(choice: str, text: str):
    """Run a GPT model on a text and show everything inside: all heads' attention, parameters, memory, embeddings.

    Args:
        choice: the model (a label of the model menu).
        text: the text the model reads (cut to the server's limit).

    Returns:
        A note (model, tokens, shapes), every head's attention (figure), the layer and head sliders, one head
        enlarged (figure), the parameter table and figure, the memory estimate, and the token and position
        embedding figures.
    """
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
    )


def head_plot(state: dict, layer: int, head: int):
    """The figure of one head of the captured weights, with token labels."""
    weights = state["attn"][layer, head].astype(np.float32)  # (T, T)
    return head_figure(weights, state["tokens"], f"layer {layer}, head {head}: weights {weights.shape}")


def shown(choice: str, text: str) -> dict:
    """What the page shows: the model and the text 'Look inside' last drew (the head sliders read its view).

    >>> shown("nano", "Hi")
    {'model': 'nano', 'text': 'Hi'}
    """
    return {"model": choice, "text": text}


def look_inside_page(choice: str, text: str) -> tuple:
    """'Look inside' on the page: the view (``look_inside``) and what it shows, for the head sliders."""
    return (*look_inside(choice, text), shown(choice, text))


def shown_head(on_page: dict | None, layer=None, head=None):
    """The head sliders: one head of the view on the page (from the view cache, or the model reads the text again).

    The page keeps only which model and text it shows (``shown``), not the weights, so a class's view can be set
    in a student's browser (ui/classroom.py) and a session holds no copy of every head's weights.
    """
    if not (isinstance(on_page, dict) and isinstance(on_page.get("model"), str)
            and isinstance(on_page.get("text"), str)):
        raise ValueError("Press 'Look inside' first: there is no captured attention yet.")
    return enlarged_head(inside_view(on_page["model"], on_page["text"]).state, layer, head)


def enlarged_head(state: dict | None, layer=None, head=None):
    """One head of the captured weights, chosen with the layer and head sliders."""
    if not state:
        raise ValueError("Press 'Look inside' first: there is no captured attention yet.")
    n_layers, n_heads = state["attn"].shape[:2]
    layer = number_input(layer, "The layer", minimum=0, maximum=n_layers - 1, whole=True, default=n_layers - 1)
    head = number_input(head, "The head", minimum=0, maximum=n_heads - 1, whole=True, default=0)
    return plot_value(head_plot(state, layer, head))


def attention_head(choice: str = DEFAULT_CHOICE, text: str = DEFAULT_TEXT, layer=None, head=None):
    """Enlarge one attention head of a model on a text: which earlier tokens each token looks at.

    Needs no browser state: the model runs on the text (or the view comes from the cache).

    Args:
        choice: the model (a label of the model menu).
        text: the text the model reads.
        layer: the layer (0 = the first; default the last).
        head: the head within the layer (default 0).

    Returns:
        The head's attention weights as a figure, and a dict with the layer, the head, the tokens and the
        (tokens x tokens) weights (rows: the token that looks, columns: the tokens it looks at).
    """
    state = inside_view(choice, text).state
    n_layers, n_heads = state["attn"].shape[:2]
    layer = number_input(layer, "The layer", minimum=0, maximum=n_layers - 1, whole=True, default=n_layers - 1)
    head = number_input(head, "The head", minimum=0, maximum=n_heads - 1, whole=True, default=0)
    weights = state["attn"][layer, head].astype(np.float32)  # (T, T)
    data = {"layer": layer, "head": head, "tokens": list(state["tokens"]),
            "weights": [[round(float(w), 4) for w in row] for row in weights]}
    return plot_value(head_plot(state, layer, head)), data


# ---------------------------------------------------------------------------------------------------------------
# The logit lens and the knock-out
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LensView:
    """A model's logit lens on one text: each layer's top LENS_TOP_K guesses at every position."""

    label: str
    tokens: list[str]  # the text's tokens (as decoded)
    top_tokens: list[list[list[str]]]  # (n_layers + 1, T, k) the guesses' texts
    top_probs: np.ndarray  # (n_layers + 1, T, k) float32


LENS_VIEWS = ResultCache(CACHED_VIEWS, 16 * 2**20)  # 64 tokens of GPT-2 small: about 0.2 MB a view
KNOCKOUTS = ResultCache(4 * CACHED_VIEWS, 8 * 2**20)  # (note, figure) of a knock-out: about 6 KB each


def lens_view(choice: str, text: str) -> LensView:
    """The logit lens of one model and one text (from the cache when someone asked before)."""
    loaded = load_choice(choice)
    text, _ = checked_text(text)
    return LENS_VIEWS.get_or_make((loaded.label, text), lambda: build_lens_view(loaded, text), owner=loaded.model)


def build_lens_view(loaded, text: str) -> LensView:
    """Run the logit lens on the text and name every guessed token once."""
    ids, _ = text_ids(loaded, text)
    with torch.inference_mode():
        lens = logit_lens(loaded.model, torch.tensor([ids]), top_k=min(LENS_TOP_K, loaded.cfg.vocab_size))
    guesses = lens.top_ids.tolist()  # (L + 1, T, k)
    names = {token_id: loaded.tokenizer.decode([token_id]) for token_id in set(lens.top_ids.flatten().tolist())}
    top_tokens = [[[names[token_id] for token_id in at_position] for at_position in row] for row in guesses]
    return LensView(loaded.label, token_strings(loaded.tokenizer, ids), top_tokens, lens.top_probs.numpy())


def lens_plot(view: LensView, last: int) -> PlotData:
    """The lens figure of the LENS_COLUMNS positions that end at token `last`."""
    n_tokens = len(view.tokens)
    first = max(0, last - LENS_COLUMNS + 1)
    shown = range(first, last + 1)
    next_tokens = [view.tokens[p + 1] if p + 1 < n_tokens else None for p in shown]
    n_layers = len(view.top_tokens) - 1
    title = f"Logit lens of {view.label}: {n_layers} layers, positions {first} to {last} of your {n_tokens} tokens"
    figure = lens_figure([[row[p] for p in shown] for row in view.top_tokens], view.top_probs[:, first:last + 1],
                         view.tokens[first:last + 1], first, next_tokens, title)
    return plot_value(figure)


def last_token_input(value, n_tokens: int) -> int:
    """The lens slider's value: a token index (the last one shown); past the text's end means its last token."""
    last = number_input(value, "The last token shown", minimum=0, maximum=MAX_TOKENS - 1, whole=True,
                        default=n_tokens - 1)
    return min(last, n_tokens - 1)


def show_lens(choice: str = DEFAULT_CHOICE, text: str = DEFAULT_TEXT, last_token: int | None = None) -> PlotData:
    """The logit lens of a model on a text: each layer's best guess for the next token, as if the model stopped there.

    Args:
        choice: the model (a label of the model menu).
        text: the text the model reads.
        last_token: the last of up to 16 positions shown (default: the text's last token).

    Returns:
        A figure: layers as rows, positions as columns, each cell that layer's top guess and its probability.
    """
    view = lens_view(choice, text)
    return lens_plot(view, last_token_input(last_token, len(view.tokens)))


def knockout_choice(loaded, layer, head, part) -> tuple[list[tuple[int, int]], list[int], str]:
    """The checked knock-out controls: (heads, layers) for gpt_core.lens.knocked_out, and what was knocked out."""
    if part not in KNOCKOUT_PARTS:
        raise ValueError(f"What to knock out must be one of: {', '.join(repr(p) for p in KNOCKOUT_PARTS)}; "
                         f"got {str(part)[:80]!r}.")
    cfg = loaded.cfg
    layer = number_input(layer, "The layer", minimum=0, maximum=cfg.n_layers - 1, whole=True, default=0)
    head = number_input(head, "The head", minimum=0, maximum=cfg.n_heads - 1, whole=True, default=0)
    if part == ONE_HEAD:
        return [(layer, head)], [], f"layer {layer}, head {head} (its output set to zero)"
    if part == WHOLE_LAYER:
        return [], [layer], f"the whole of layer {layer} (it passes its input on unchanged)"
    return [], [], ""


def quoted(token: str) -> str:
    """A token in a Markdown note: whitespace visible, inside backticks.

    >>> quoted(" the")
    '`·the`'
    """
    return f"`{visible_token(token).replace('`', 'ˋ')}`"


def knockout_note(loaded, tokens: list[str], result, knocked: str) -> str:
    """What the knock-out changed, in words: the top-1 guess before and after, and tokens new in the top 10."""
    decode = loaded.tokenizer.decode
    where = f"after {quoted(tokens[-1])} (token {len(tokens) - 1}, the last of your text)"
    top_before, p_before = decode([int(result.ids[0])]), float(result.before[0])
    if not knocked:
        return (f"**The intact model** ({loaded.label}): its {len(result.ids)} most likely next tokens {where}. "
                f"Top guess {quoted(top_before)} {p_before:.1%}. Pick a layer and a head, or the whole layer, "
                f"then **Knock out**.")
    top_after, p_after = decode([int(result.after_ids[0])]), float(result.after_probs[0])
    if int(result.after_ids[0]) == int(result.ids[0]):
        change = f"still {quoted(top_after)}, now {p_after:.1%} (was {p_before:.1%})"
    else:
        change = (f"**changes** from {quoted(top_before)} ({p_before:.1%} → {float(result.after[0]):.1%}) "
                  f"to {quoted(top_after)} ({p_after:.1%})")
    lines = [f"**Knocked out: {knocked}** in {loaded.label}. Next token {where}: the top guess {change}."]
    new = [int(i) for i in result.after_ids if int(i) not in set(result.ids.tolist())]
    if new:
        lines.append(f"New in the top {len(result.ids)} without it: "
                     + ", ".join(quoted(decode([i])) for i in new) + ".")
    return "\n\n".join(lines)


def knockout_view(choice: str = DEFAULT_CHOICE, text: str = DEFAULT_TEXT, layer: int = 0, head: int = 0,
                  part: str = ONE_HEAD) -> tuple[str, PlotData]:
    """Knock out one attention head or a whole layer and compare the next-token probabilities with the intact model.

    Args:
        choice: the model (a label of the model menu).
        text: the text the model reads; the probabilities are for the token after its last one.
        layer: the layer (0 = the first).
        head: the head within the layer (for part 'one head').
        part: 'one head', 'the whole layer', or 'nothing (the intact model)'.

    Returns:
        A note on what changed (Markdown) and a bar figure of the top next tokens, intact and knocked out.
    """
    loaded = load_choice(choice)
    text, _ = checked_text(text)
    heads, layers, knocked = knockout_choice(loaded, layer, head, part)
    key = (loaded.label, text, tuple(heads), tuple(layers))
    cached = KNOCKOUTS.get(key, owner=loaded.model)
    if cached is not None:
        return cached
    ids, _ = text_ids(loaded, text)
    with torch.inference_mode():
        result = knockout_effect(loaded.model, torch.tensor([ids]), heads, layers,
                                 top_k=min(KNOCKOUT_BARS, loaded.cfg.vocab_size))
    tokens = token_strings(loaded.tokenizer, ids)
    bars = token_strings(loaded.tokenizer, result.ids.tolist())
    after = result.after.numpy() if knocked else None
    title = (f"Knocked out: {knocked.split(' (')[0]}" if knocked else "The intact model") + \
        f": the next token after {visible_token(tokens[-1])!r}"
    view = (knockout_note(loaded, tokens, result, knocked),
            plot_value(knockout_figure(bars, result.before.numpy(), after, title)))
    KNOCKOUTS.put(key, view, owner=loaded.model)
    return view


def intact_view(choice: str, text: str) -> tuple[str, PlotData]:
    """The Reset button: the intact model's next-token probabilities."""
    return knockout_view(choice, text, 0, 0, NOTHING)


def refresh_lens_and_knockout(choice: str, text: str, layer, head):
    """After 'Look inside' or another model: the lens of the text's last tokens, the knock-out sliders fitted to
    the model (values kept when they still exist) and the intact model's bars."""
    loaded = load_choice(choice)
    view = lens_view(choice, text)
    last = len(view.tokens) - 1
    cfg = loaded.cfg
    layer = min(number_input(layer, "The layer", minimum=0, whole=True, default=0), cfg.n_layers - 1)
    head = min(number_input(head, "The head", minimum=0, whole=True, default=0), cfg.n_heads - 1)
    note, bars = intact_view(choice, text)
    return (lens_plot(view, last), gr.update(maximum=max(last, 1), value=last),
            gr.update(maximum=max(cfg.n_layers - 1, 1), value=layer),
            gr.update(maximum=max(cfg.n_heads - 1, 1), value=head), note, bars)


def build_tab(model_choice: gr.Dropdown) -> None:
    with one_torch_thread():  # every visitor's first view, made once per server while the page is built
        first = inside_view(model_choice.value, DEFAULT_TEXT)
        first_lens = lens_view(model_choice.value, DEFAULT_TEXT)
        first_knockout = intact_view(model_choice.value, DEFAULT_TEXT)
    explain(INTRO)
    with gr.Row():
        # One line: Enter looks inside.
        text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=1, max_lines=4, scale=4, max_length=MAX_CHARS,
                          elem_id="inside-text")
        run = gr.Button("Look inside", variant="primary", scale=1)
    note = gr.Markdown(first.note, label="the model and the text", elem_classes=["lab-note"])
    grid = gr.Plot(first.grid, label="every head's attention", show_label=False, elem_id="inside-grid")
    with gr.Row():
        layer = gr.Slider(0, first.n_layers - 1, value=first.n_layers - 1, step=1, label="layer",
                          elem_id="inside-layer")
        head = gr.Slider(0, first.n_heads - 1, value=0, step=1, label="head", elem_id="inside-head-slider")
    head_plot_view = gr.Plot(first.head, label="one head, enlarged", show_label=False, elem_id="inside-head")
    with gr.Row():
        with gr.Column():
            params = gr.Dataframe(first.facts.table, headers=["component", "parameters", "share"],
                                  label="parameters", interactive=False, wrap=True, elem_id="inside-params",
                                  column_widths=["34%", "22%", "44%"])
            memory = gr.Markdown(first.facts.memory, label="memory")
        params_plot = gr.Plot(first.facts.parameters, label="parameters by part", show_label=False)
    embed_plot = gr.Plot(first.embeddings, label="token embeddings", show_label=False)
    pos_plot = gr.Plot(first.positions, label="position embeddings", show_label=False)
    on_page = gr.JSON(shown(model_choice.value, DEFAULT_TEXT), visible=False)  # the model and text shown
    show_source(GPTModel.forward, GPTModel.embed, TransformerBlock.forward, MultiHeadAttention.forward,
                GPTModel.forward_with_capture, parameter_breakdown, estimate_memory)

    explain(LENS_INTRO)
    last_token = len(first_lens.tokens) - 1
    lens_last = gr.Slider(0, max(last_token, 1), value=last_token, step=1, label="last token shown",
                          elem_id="inside-lens-last")
    lens_plot_view = gr.Plot(lens_plot(first_lens, last_token), label="logit lens", show_label=False, elem_id="inside-lens")

    explain(KNOCKOUT_INTRO)
    with gr.Row():
        ko_layer = gr.Slider(0, max(first.n_layers - 1, 1), value=0, step=1, label="layer", elem_id="inside-ko-layer")
        ko_head = gr.Slider(0, max(first.n_heads - 1, 1), value=0, step=1, label="head", elem_id="inside-ko-head")
        ko_part = gr.Radio(list(KNOCKOUT_PARTS[:2]), value=ONE_HEAD, label="knock out", elem_id="inside-ko-part")
    with gr.Row():
        ko_run = gr.Button("Knock out", variant="primary", elem_id="inside-ko-run")
        ko_reset = gr.Button("Reset (the intact model)", elem_id="inside-ko-reset")
    ko_note = gr.Markdown(first_knockout[0], label="knock-out note", elem_classes=["lab-note"], elem_id="inside-ko-note")
    ko_plot = gr.Plot(first_knockout[1], label="next-token probabilities", show_label=False, elem_id="inside-ko-plot")
    show_source(logit_lens, knocked_out, zero_heads_hook, pass_through_hook,
                title="The gpt_core code of the logit lens and the knock-out")

    outputs = [note, grid, layer, head, head_plot_view, params, params_plot, memory, embed_plot, pos_plot]
    # Concurrency by cost: a cached view costs ~1 ms, a new one a forward pass (0.05-0.5 s, torch uses both
    # cores), so 4 at once; the head slider only redraws one small figure, so it has its own queue.
    # The page's events also say what the page now shows (on_page); the API's /inside returns the view only.
    queue = {"concurrency_limit": 4, "concurrency_id": "inside"}
    gr.Button(visible=False).click(tool(explore_view(look_inside), "inside"), [model_choice, text], outputs,
                                   api_name="inside", **queue)
    inside_event = {"fn": friendly(explore_view(look_inside_page)), "inputs": [model_choice, text],
                    "outputs": [*outputs, on_page], **queue}
    # After a new view: the lens of its last tokens and the intact model's bars (sliders fitted to the model).
    refresh = {"fn": friendly(explore_view(refresh_lens_and_knockout)), "inputs": [model_choice, text, ko_layer, ko_head],
               "outputs": [lens_plot_view, lens_last, ko_layer, ko_head, ko_note, ko_plot], "api_name": False,
               "concurrency_limit": 4, "concurrency_id": "inside"}
    run.click(**inside_event, api_name=False).success(**refresh)
    text.submit(**inside_event, api_name=False).success(**refresh)
    followed("inside", {"text": text}, views=[inside_event, refresh])  # class mode: the teacher's text, drawn
    model_choice.change(**inside_event, api_name=False).success(**refresh)  # another model: the same text
    for slider in (layer, head):
        # The mouse sends `input` while dragging and `release` at the end; the arrow keys send `input` only.
        # always_last: a fast drag redraws with its last value, not every value it passed.
        # preprocess=False: the handler checks the numbers itself (number_input), so NaN, infinity or a word
        # from an API client gets a plain message.
        for trigger in (slider.release, slider.input):
            trigger(friendly(shown_head), [on_page, layer, head], head_plot_view, api_name=False,
                    preprocess=False, concurrency_limit=8, concurrency_id="inside_head", trigger_mode="always_last")

    # The lens and the knock-out share the view's queue (each is one or two forward passes of the model).
    # preprocess=False: the handlers check every number themselves (number_input), as the head sliders do.
    shared = {"concurrency_limit": 4, "concurrency_id": "inside", "preprocess": False, "trigger_mode": "always_last"}
    lens_event = {"fn": tool(explore_view(show_lens), "inside_lens"), "inputs": [model_choice, text, lens_last],
                  "outputs": lens_plot_view, **shared}
    lens_last.release(**lens_event, api_name="inside_lens")
    lens_last.input(**lens_event, api_name=False)
    knockout_event = {"fn": tool(explore_view(knockout_view), "inside_knockout"),
                      "inputs": [model_choice, text, ko_layer, ko_head, ko_part], "outputs": [ko_note, ko_plot], **shared}
    ko_run.click(**knockout_event, api_name="inside_knockout")
    for control in (ko_layer, ko_head):  # moving a slider knocks out what it points at now
        control.release(**knockout_event, api_name=False)
        control.input(**knockout_event, api_name=False)
    ko_part.change(**knockout_event, api_name=False)
    # For scripts and agents: the enlarged head of any model, text, layer and head, without the page's state.
    head_data = gr.JSON(label="head weights", visible=False)
    gr.Button(visible=False).click(tool(explore_view(attention_head), "attention_head"),
                                   [model_choice, text, layer, head], [head_plot_view, head_data],
                                   api_name="attention_head", **shared)
    ko_reset.click(friendly(explore_view(intact_view)), [model_choice, text], [ko_note, ko_plot], api_name=False,
                   **shared)
