"""Attention tab: the ladder of chapter 3 on the student's own sentence.

simple dot products -> trainable queries/keys/values -> causal mask (+ dropout) -> two heads.
A class repeats the same sentence, so finished ladders are kept in a small ResultCache (see inside_tab).
"""

from __future__ import annotations

import functools
import threading

import gradio as gr
import torch

from gpt_core.attention import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttention,
    attention_steps,
    simple_attention,
)
from ui.api import tool
from ui.common import cap_text, explain, number_input, show_source
from ui.follow import followed
from ui.models import encode_capped, gpt2_tokenizer, token_strings
from ui.runs import explore_view
from ui.view_cache import ResultCache, plot_value
from visualizations.attention import Matrix, dim_labels, ladder_figure, masked_cells, short_token_labels

MAX_TOKENS = 24  # the matrices stay readable up to about this many tokens
MAX_CHARS = 1_000  # 24 tokens are about 120 characters; longer text is cut before it is encoded
SEED = 123
DEFAULT_TEXT = "Your journey starts with one step"
# Chapter 3's inputs for DEFAULT_TEXT (6 tokens x 3 numbers) and the seed of its SelfAttention_v2 example: with
# them, every number on this tab is one the book prints (the other rungs use seed 123, as the book does).
BOOK_INPUTS = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                            [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
BOOK_SELF_ATTENTION_SEED = 789
MAX_DROPOUT = 0.9
EXAMPLES = [
    [DEFAULT_TEXT],  # the book's sentence: the book's own numbers
    ["The cat sat on the mat because it was tired"],
    ["I saw the dog and the dog saw me"],  # a repeated token has the same input vector in each place
    ["Every effort moves you"],  # the book's prompt in chapters 4 and 5
]
# At most 128 ladders and 32 MB (a ladder is 80-140 kB of figures: the book's 83 kB, 24 tokens with dropout 140 kB).
LADDERS = ResultCache(128, 32 * 2**20)
SEEDED = threading.Lock()  # one seeded draw from torch's global random generator at a time

INTRO = """
### Attention, one rung at a time
Each token of your sentence becomes a small vector (random but fixed, seed 123, 3 numbers like the book; on the
book's sentence, the book's own). **Scores** say how well a query token matches every key token; **softmax** turns
each row of scores into **weights** that add up to 1; each output (context vector) is the weighted sum of the value
vectors. In the square matrices, rows are the tokens that look (queries) and columns the tokens they look at (keys).
Grey cells are **masked** (the future: score −∞, weight 0); dark cells were **dropped** by dropout.
Colours: weights in blue, from 0 to the matrix's largest weight (at least 2/T, twice the even share); scores blue
below 0 and red above; vectors purple below 0 and orange above. The numbers are printed in the cells while they
fit; hover over a cell for its exact value.
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


def build_module(cls, *args, seed: int = SEED, **kwargs) -> torch.nn.Module:
    """Every rung starts from seed 123, so rung 2 and rung 3 share the same W_query, W_key, W_value
    (except on the book's sentence, whose rung 2 uses the book's seed 789).

    torch's random generator is shared by the whole server: the lock keeps two requests from drawing from it
    in turn (which would give them other weights), and fork_rng gives other code its random state back.
    """
    with SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args, **kwargs).eval()


def apply_dropout(weights: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """What training does to the weights: zero a random `rate` of them, scale the rest by 1 / (1 - rate).

    Returns (weights after dropout, True where a non-zero weight was dropped).
    """
    with SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        dropped_weights = torch.nn.Dropout(rate).train()(weights)
    return dropped_weights, (dropped_weights == 0) & (weights > 0)


def vectors(title: str, values: torch.Tensor, rows: list[str], decimals: int = 4) -> Matrix:
    """One vector per token (inputs, queries, keys, values, context): rows are tokens, columns features."""
    return Matrix(title, values.numpy(), rows, dim_labels(values.shape[-1]), "vectors", decimals, row_name="token")


def token_matrix(title: str, values: torch.Tensor, rows: list[str], kind: str, masked=None, dropped=None) -> Matrix:
    """A (T, T) matrix of scores or weights: rows are the queries, columns the keys they look at."""
    values = values.numpy()
    return Matrix(title, values, rows, rows, kind, masked=masked, dropped=dropped,
                  masked_text="−∞" if kind == "scores" else "0", row_name="query", column_name="key")


def projections(module, labels: list[str], steps) -> list[Matrix]:
    """W_query, W_key, W_value as (d_in, d_out) (inputs · W = queries), then the queries, keys and values."""
    matrices = []
    for name, layer in (("W_query", module.W_query), ("W_key", module.W_key), ("W_value", module.W_value)):
        weight = layer.weight.T  # nn.Linear keeps (d_out, d_in); the book's x @ W uses (d_in, d_out)
        matrices.append(Matrix(name, weight.numpy(), dim_labels(weight.shape[0]), dim_labels(weight.shape[1]),
                               "vectors", row_name="input", column_name="output"))
    return matrices + [vectors("queries<br>= inputs · W_query", steps.queries, labels),
                       vectors("keys<br>= inputs · W_key", steps.keys, labels),
                       vectors("values<br>= inputs · W_value", steps.values, labels)]


def rung_simple(inputs, tokens):
    labels = short_token_labels(tokens)
    attn_scores = inputs @ inputs.T  # (T, T)
    attn_weights, context_vecs = simple_attention(inputs)
    text = (f"**1 · Simple attention** (no trainable weights): inputs {shape(inputs)} · inputsᵀ "
            f"{shape(inputs.T)} = scores {shape(attn_scores)} → softmax per row → weights {shape(attn_weights)}; "
            f"weights · inputs = context {shape(context_vecs)}")
    figure = ladder_figure([[vectors("inputs<br>(token vectors)", inputs, labels, decimals=2),
                             token_matrix("scores<br>= inputs · inputsᵀ", attn_scores, labels, "scores"),
                             token_matrix("weights<br>= softmax(scores)", attn_weights, labels, "weights"),
                             vectors("context<br>= weights · inputs", context_vecs, labels)]])
    return text, figure


def rung_self_attention(inputs, tokens, d_out, seed: int = SEED):
    labels = short_token_labels(tokens)
    module = build_module(SelfAttention, inputs.shape[-1], d_out, seed=seed)
    steps = attention_steps(module, inputs, causal=False)
    uniform = 1 / len(tokens)
    text = (f"**2 · Self-attention with Q, K, V**: W_query {shape(module.W_query.weight.T)} turns inputs "
            f"{shape(inputs)} into queries {shape(steps.queries)}; queries {shape(steps.queries)} · keysᵀ "
            f"{shape(steps.keys.T)} = scores {shape(steps.scores)}; softmax(scores / √{d_out}) = weights "
            f"{shape(steps.weights)}; weights · values {shape(steps.values)} = context {shape(steps.context)}.  \n"
            f"Why are the weights so even (all near 1/{len(tokens)} = {uniform:.2f})? Untrained W matrices hold "
            f"small random numbers (±1/√{inputs.shape[-1]}), so every score is close to 0 and softmax gives every "
            f"token almost the same weight: training is what makes some tokens matter more.")
    figure = ladder_figure([projections(module, labels, steps),
                            [token_matrix("scores<br>= queries · keysᵀ", steps.scores, labels, "scores"),
                             token_matrix(f"weights<br>= softmax(scores / √{d_out})", steps.weights, labels,
                                          "weights"),
                             vectors("context<br>= weights · values", steps.context, labels)]])
    return text, figure


def rung_causal(inputs, tokens, d_out, causal, dropout_rate, same_weights_as_rung_2: bool = True):
    labels = short_token_labels(tokens)
    module = build_module(CausalAttention, inputs.shape[-1], d_out, len(tokens), dropout_rate)
    steps = attention_steps(module, inputs, causal=causal)
    masked = masked_cells(steps.masked_scores.numpy())  # True above the diagonal when causal
    matrices = [token_matrix("masked scores<br>(future = −∞)" if causal else "scores<br>(mask off)",
                             steps.masked_scores, labels, "scores"),
                token_matrix(f"weights<br>= softmax(… / √{d_out})", steps.weights, labels, "weights",
                             masked=masked)]
    weights_note = ("same W matrices, queries, keys and values as rung 2" if same_weights_as_rung_2 else
                    "W matrices from seed 123, as the book")
    text = (f"**3 · Causal attention** ({weights_note}): scores {shape(steps.scores)} with the "
            f"{(len(tokens) * (len(tokens) - 1)) // 2} cells above the diagonal set to -∞, so softmax gives them "
            f"weight 0 and each row still sums to 1." if causal else
            "**3 · Causal attention, mask switched off**: every token sees the future too (what a GPT must not do).")
    context = steps.context
    if dropout_rate > 0:
        dropped_weights, dropped = apply_dropout(steps.weights, dropout_rate)
        matrices.append(token_matrix(f"after dropout p={dropout_rate:g}<br>(kept × {1 / (1 - dropout_rate):.2f})",
                                     dropped_weights, labels, "weights", masked=masked, dropped=dropped.numpy()))
        context = dropped_weights @ steps.values
        text += (f" Dropout (training only) zeroed {int(dropped.sum())} weights and scaled the rest by "
                 f"1 / (1 - {dropout_rate:g}); the context is computed from the weights after dropout.")
    matrices.append(vectors("context<br>= weights · values" if dropout_rate == 0 else
                            "context<br>= dropped weights · values", context, labels))
    rows = [matrices] if same_weights_as_rung_2 else [projections(module, labels, steps), matrices]
    return text, ladder_figure(rows)


def rung_multi_head(inputs, tokens, d_out, causal):
    labels = short_token_labels(tokens)
    num_heads = 2
    wrapper = build_module(MultiHeadAttentionWrapper, inputs.shape[-1], d_out, len(tokens), 0.0, num_heads)
    rows, contexts = [], []
    for index, head in enumerate(wrapper.heads):
        steps = attention_steps(head, inputs, causal=causal)
        contexts.append(steps.context)
        masked = masked_cells(steps.masked_scores.numpy())
        rows.append([token_matrix(f"head {index}<br>{'masked ' if causal else ''}scores", steps.masked_scores,
                                  labels, "scores"),
                     token_matrix(f"head {index}<br>weights", steps.weights, labels, "weights", masked=masked),
                     vectors(f"head {index}<br>context", steps.context, labels)])
    context = torch.cat(contexts, dim=-1)
    joined = Matrix("context<br>= [head 0 | head 1]", context.numpy(), labels,
                    [f"h{head} dim {i}" for head in range(num_heads) for i in range(d_out)], "vectors",
                    row_name="token")
    rows.append([joined])
    text = (f"**4 · Multi-head attention** ({num_heads} heads): each head has its own W_query/W_key/W_value, so "
            f"it scores the tokens differently; each head gives context {shape(contexts[0])}, concatenated: "
            f"context {shape(context)} = (tokens, {num_heads} heads × {d_out}).")
    return text, ladder_figure(rows)


def flag(value, what: str, default: bool) -> bool:
    """A checkbox value: True or False (None gives the default); anything else is a plain error.

    >>> flag(None, "The causal mask", True)
    True
    """
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false; got {str(value)[:40]!r}.")
    return value


def checked_settings(text, dim, d_out, causal, use_dropout, dropout_rate) -> tuple:
    """The ladder's inputs, each checked, with plain messages for anything an API client may send."""
    if text is not None and not isinstance(text, str):
        raise ValueError(f"The sentence must be a string of characters, not {type(text).__name__}.")
    dim = number_input(dim, "The embedding size d_in", minimum=2, maximum=8, whole=True, default=3)
    d_out = number_input(d_out, "The query/key/value size d_out", minimum=1, maximum=4, whole=True, default=2)
    causal = flag(causal, "The causal mask switch", True)
    use_dropout = flag(use_dropout, "The dropout switch", False)
    rate = number_input(dropout_rate, "The dropout rate", minimum=0, maximum=MAX_DROPOUT, default=0.5)
    return text, dim, d_out, causal, rate if use_dropout else 0.0


def attention_ladder(text: str = DEFAULT_TEXT, dim=3, d_out=2, causal=True, use_dropout=False, dropout_rate=0.5):
    """Compute chapter 3's attention ladder on a sentence: simple, self-attention with Q/K/V, causal (+ dropout), two heads.

    Args:
        text: the sentence (its first 24 GPT-2 tokens; the book's sentence gives the book's numbers).
        dim: the embedding size d_in of each token's vector (2 to 8).
        d_out: the query/key/value size (1 to 4).
        causal: hide the future with the causal mask.
        use_dropout: apply dropout to the weights, as in training.
        dropout_rate: the dropout rate (0 to 0.9).

    Returns:
        A note, the inputs as a table, then for each of the four rungs a Markdown explanation with the shapes and
        a figure of its matrices (scores, weights, context vectors).
    """
    text, dim, d_out, causal, rate = checked_settings(text, dim, d_out, causal, use_dropout, dropout_rate)
    text, char_note = cap_text(text, MAX_CHARS)
    key = (text, dim, d_out, causal, rate)
    ladder = LADDERS.get(key)
    if ladder is None:
        ladder = build_ladder(text, char_note, dim, d_out, causal, rate)
        LADDERS.put(key, ladder)
    note, table, rungs = ladder
    outputs = [note, gr.update(value=table, headers=["token", *[f"dim {i}" for i in range(dim)]])]
    for rung_text, figure in rungs:
        outputs += [rung_text, figure]
    return tuple(outputs)


def build_ladder(text: str, char_note: str | None, dim: int, d_out: int, causal: bool, rate: float) -> tuple:
    """The slow path: encode, run the four rungs and draw them; returns (note, table, [(text, plot), ...])."""
    tokenizer = gpt2_tokenizer()
    ids, token_note = encode_capped(tokenizer, text, MAX_TOKENS)
    tokens = token_strings(tokenizer, ids)
    book = text.strip() == DEFAULT_TEXT and dim == 3 and len(ids) == len(BOOK_INPUTS)
    inputs = BOOK_INPUTS if book else embedding_table(dim)[ids]  # (T, dim)
    notes = [note for note in (char_note, token_note) if note]
    note = f"{len(ids)} tokens → inputs {shape(inputs)} (one {dim}-number vector per token)."
    if book:
        note += (" These are the book's own inputs and seeds (chapter 3; rung 2 uses seed 789), so every number "
                 "here is one the book prints.")
    if notes:
        note = " ".join(notes) + " " + note
    table = [[f"{i}: {tok!r}", *[round(float(v), 2) for v in row]] for i, (tok, row) in enumerate(zip(tokens, inputs))]
    with torch.inference_mode():
        seed_2 = BOOK_SELF_ATTENTION_SEED if book else SEED
        rungs = [rung_simple(inputs, tokens), rung_self_attention(inputs, tokens, d_out, seed_2),
                 rung_causal(inputs, tokens, d_out, causal, rate, same_weights_as_rung_2=not book),
                 rung_multi_head(inputs, tokens, d_out, causal)]
    return note, table, [(rung_text, plot_value(figure)) for rung_text, figure in rungs]


def build_tab() -> None:
    explain(INTRO)
    # Drawn on opening: the ladder for the default settings is every output's first value. It is computed once
    # here (about 30 ms, offline: the book's own inputs) and kept in LADDERS like any other ladder.
    first_note, first_table, *first_rungs = attention_ladder()
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(DEFAULT_TEXT, label="Sentence (press Enter to draw it)", lines=1, max_lines=1,
                              max_length=MAX_CHARS)
            examples = gr.Examples(EXAMPLES, inputs=[text], label="Sentences to try (click one)")
        with gr.Column(scale=2):
            dim = gr.Slider(2, 8, value=3, step=1, label="embedding size d_in (the book uses 3)")
            d_out = gr.Slider(1, 4, value=2, step=1, label="query/key/value size d_out (the book uses 2)")
    with gr.Row():
        causal = gr.Checkbox(True, label="causal mask (hide the future)")
        use_dropout = gr.Checkbox(False, label="dropout (as in training)")
        dropout_rate = gr.Slider(0.0, MAX_DROPOUT, value=0.5, step=0.1, label="dropout rate")
        run = gr.Button("Show attention", variant="primary")
    note = gr.Markdown(first_note, label="note", elem_classes=["lab-note"])
    with gr.Accordion("the inputs as a table (to copy the numbers)", open=False):
        inputs_table = gr.Dataframe(first_table["value"], headers=first_table["headers"], interactive=False,
                                    max_height=260, label="inputs", show_label=False)
    outputs = [note, inputs_table]
    for rung in range(1, 5):
        rung_text, rung_plot = first_rungs[2 * rung - 2: 2 * rung]
        outputs.append(gr.Markdown(rung_text, label=f"rung {rung} explained"))
        outputs.append(gr.Plot(rung_plot, label=f"rung {rung} matrices", show_label=False,
                               elem_id=f"attention-rung-{rung}"))
    show_source(simple_attention, SelfAttention, CausalAttention, MultiHeadAttentionWrapper, attention_steps)

    # One queue for every trigger of the ladder: a cached ladder costs ~1 ms, a new one ~30-100 ms. preprocess=False:
    # the handler checks each value itself, so NaN, infinity or a word from an API client gets a plain message.
    event = {"fn": tool(explore_view(attention_ladder), "attention"), "inputs": [text, dim, d_out, causal, use_dropout, dropout_rate],
             "outputs": outputs, "preprocess": False, "concurrency_limit": 4, "concurrency_id": "attention"}
    run.click(**event, api_name="attention")
    text.submit(**event, api_name=False)  # Enter in the sentence box
    followed("attention", {"text": text, "dim": dim, "d_out": d_out, "causal": causal, "dropout": use_dropout,
                          "rate": dropout_rate}, views=[event])  # class mode: the teacher's ladder
    examples.load_input_event.then(**event, api_name=False)  # a clicked example is drawn at once
    for slider in (dim, d_out, dropout_rate):  # the mouse sends `release`; the arrow keys and typing send `input`
        gr.on([slider.input, slider.release], **event, api_name=False, trigger_mode="always_last")
    gr.on([causal.input, use_dropout.input], **event, api_name=False)
