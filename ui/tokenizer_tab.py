"""The Tokenizer tab: text -> tokens -> your own BPE -> training pairs -> embeddings (the book's chapter 2).

Layout and wiring only: the work is done by gpt_core.tokenizer and gpt_core.data, the pictures by
visualizations.tokens. Every handler is a plain function, so tests can call it directly.
"""

from __future__ import annotations

import functools
import time

import gradio as gr

from gpt_core.bpe import apply_merges, merge_steps, train_merges
from gpt_core.data import (
    SlidingWindowDataset,
    cosine_similarities,
    input_embeddings,
    read_user_text,
    shakespeare_text,
    window_starts,
    windows,
)
from gpt_core.tokenizer import MAX_TRAIN_VOCAB, BPETokenizer, gpt2_encoding
from ui import models
from ui.api import tool
from ui.common import SliderBox, cap_text, explain, friendly, number_input, plural, show_source
from ui.follow import followed, redraw_unless_drawn
from ui.runs import explore_view
from ui.uploads import read_upload
from visualizations.tokens import (
    cosine_heatmap,
    embedding_heatmaps,
    merge_steps_html,
    merges_table_html,
    token_spans_html,
    token_text,
    windows_html,
)

GPT2_CHOICE = "GPT-2"
TRAINED_CHOICE = "Your trained BPE"
SHAKESPEARE_SOURCE = "Shakespeare (packaged)"
TEXT_SOURCE = "The text above"
UPLOAD_SOURCE = "An uploaded .txt file"

DEFAULT_TEXT = "Hello, world! I'm learning how GPT-2 reads text:   1,234 tokens later, it's 🤖-ready."
DEFAULT_WORD = "understanding"
DEFAULT_EMBED_TEXT = "the cat sat on the mat, the dog sat on the rug"
# Texts a student tries next (section 1): (label, text).
EXAMPLE_TEXTS = [
    ("English", DEFAULT_TEXT),
    ("Python code", 'def greet(name):\n    """Say hello."""\n    return f"Hello, {name}!"  # 4 spaces of indent\n'),
    ("Numbers", "In 2024, 1,234,567 people paid $3.99 each: 3.14159 × 10^6 ≈ 3141590. Call 555-0123."),
    ("Other languages", "Bonjour le monde ! Der Kühlschrank ist leer. Привет, мир! 你好，世界！ こんにちは世界"),
    ("Emoji and accents", "naïve café 🤖👩🏽‍💻 résumé — “quotes” …"),
    ("Repeated words", "the the the The THE the, the. the\nthe"),
    ("Shakespeare", "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun."),
]

MAX_DRAWN_TOKENS = 2_000  # spans drawn in the browser; the counts cover the whole text
# Text of sections 1 and 3 is cut to this: the from-scratch encoder takes about 2 µs a character on new text.
MAX_TEXT_CHARS = 100_000
# BPE merges inside one pre-token, and its merge loop takes time that grows with the square of the pre-token's
# length: a pre-token (a word, a number, a run of punctuation) is cut at this many characters.
MAX_PIECE_CHARS = 200
MAX_WORD_CHARS = 200  # the word replayed merge by merge
MAX_EMBED_CHARS = 500  # the embeddings need 16 tokens: about 80 characters
MAX_CONTEXT = 64  # the training-pairs sliders
TRAIN_MAX_CHARS = 500_000  # training text is cut to this, to keep training a few seconds long
MAX_UPLOAD_BYTES = 2_000_000
SHOWN_MERGES = 20  # first and last merges in the table
SHOWN_WINDOWS = 4
MAX_EMBED_TOKENS = 16
EMB_DIM = 16

# Scoped CSS for this tab's HTML outputs (the app-wide CSS styles .lab-tokens and span.tok).
TABLE_CSS = """
table { border-collapse: collapse; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.92rem; }
table, tr { border: 0 !important; }
th, td { padding: 3px 8px; border: 0 !important; border-bottom: 1px solid #e5e7eb !important; text-align: left;
         vertical-align: middle; }
.lab-merge-blocks { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.lab-merge-blocks caption { text-align: left; color: #374151; font-weight: 600; padding-bottom: 4px; }
th { color: #374151; font-weight: 600; }
span.tok { border-radius: 4px; padding: 1px 3px; margin: 0 1px; color: #111; white-space: pre; }
tr.current { background: #f1f5f9; }
td.step-no { color: #6b7280; white-space: nowrap; }
td.chips { white-space: nowrap; padding: 6px 8px; }
.lab-windows { display: flex; flex-direction: column; gap: 10px; }
table.lab-window caption { text-align: left; color: #6b7280; font-size: 0.85rem; }
table.lab-window { width: auto; }
table.lab-window td.tok { text-align: center; border: 1px solid #fff !important; min-width: 3.2em; white-space: pre; }
table.lab-window td.tok small { color: #4b5563; font-size: 0.75rem; }
.lab-note { color: #555; font-size: 0.9rem; }
"""


def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2's tokenizer, loaded once per server (0.4 s, 60 MB) and shared by every visitor and every tab (it is
    read-only): the same object as ui.models.gpt2_tokenizer(), so the server holds one copy."""
    return models.gpt2_tokenizer()


def _pick_tokenizer(choice: str, trained: BPETokenizer | None) -> BPETokenizer:
    if choice == TRAINED_CHOICE:
        if trained is None:
            raise ValueError("Train your own BPE in section 2 first, then choose it here.")
        return trained
    return gpt2_tokenizer()


def _reference_encoding(tokenizer: BPETokenizer):
    """tiktoken's encoder for the same vocabulary: the reference the from-scratch encoder is checked against."""
    return gpt2_encoding() if tokenizer is gpt2_tokenizer() else tokenizer.as_tiktoken()


def _note(text: str) -> str:
    return f'<p class="lab-note">{text}</p>'


def checked_text(value, what: str) -> str:
    """Text from a text box ("" for nothing); anything else an API client sends gets a plain message."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string of characters, not {type(value).__name__}.")
    return value


def cut_long_piece(tokenizer: BPETokenizer, text: str) -> tuple[str, str | None]:
    """`text` cut MAX_PIECE_CHARS characters into its first longer pre-token (with a note), or all of it.

    >>> cut_long_piece(gpt2_tokenizer(), "hi " + "a" * 300)[0] == "hi " + "a" * 199
    True
    """
    position = 0
    for piece in tokenizer.pretokenize(text):
        start = text.find(piece, position)
        if len(piece) > MAX_PIECE_CHARS:
            end = start + MAX_PIECE_CHARS
            return text[:end], (
                f"Stopped at character {end:,}: a run of {len(piece):,} characters with no break (one pre-token) "
                f"starts at character {start:,}. BPE merges inside a pre-token, and the from-scratch merge loop "
                f"takes time that grows with the square of its length, so only its first {MAX_PIECE_CHARS} "
                "characters are used."
            )
        position = start + len(piece)
    return text, None


def bounded_text(tokenizer: BPETokenizer, text, limit: int, what: str = "text") -> tuple[str, str | None]:
    """The text the tab works on: checked, cut to `limit` characters and before any over-long pre-token."""
    text, length_note = cap_text(checked_text(text, "The text"), limit, what=what)
    text, piece_note = cut_long_piece(tokenizer, text)
    notes = [note for note in (length_note, piece_note) if note]
    return text, " ".join(notes) or None


# ---------------------------------------------------------------------------------------------------------------
# 1. Text -> tokens
# ---------------------------------------------------------------------------------------------------------------


def parity_message(ours: list[int], reference: list[int], tokenizer: BPETokenizer) -> str:
    """✓ when the from-scratch ids equal tiktoken's, else where they first differ."""
    if ours == reference:
        return f"✓ identical to tiktoken ({len(ours):,} ids)"
    position = next((i for i, (a, b) in enumerate(zip(ours, reference)) if a != b), min(len(ours), len(reference)))
    ours_id = ours[position] if position < len(ours) else None
    ref_id = reference[position] if position < len(reference) else None
    return (
        f"✗ differs from tiktoken at position {position:,}: from scratch gives id {ours_id}, tiktoken gives id "
        f"{ref_id} ({len(ours):,} vs {len(reference):,} ids)"
    )


def tokenize_text(text: str, choice: str, trained: BPETokenizer | None = None) -> tuple[str, str, str]:
    """Cut a text into tokens with GPT-2's BPE or your own trained BPE, with the counts and tiktoken's check.

    Choosing "Your trained BPE" before training one gives a note in this section (the text box redraws the
    tokens at every change, so a popup would come back at every key).

    Args:
        text: the text to tokenize (cut to the server's limit).
        choice: the tokenizer: GPT-2, or your trained BPE (after train_bpe in the same session).
        trained: the session's own trained BPE (kept by the page after train_bpe).

    Returns:
        The coloured tokens with their ids (HTML), the counts (characters, tokens) and the check against tiktoken.
    """
    if choice == TRAINED_CHOICE and trained is None:
        return _note("Train your own BPE in section 2 first, then choose it here (GPT-2's tokens meanwhile: "
                     "choose GPT-2)."), "0 tokens", ""
    tokenizer = _pick_tokenizer(choice, trained)
    text, cut_note = bounded_text(tokenizer, text, MAX_TEXT_CHARS)
    if not text:
        return _note("Type or paste some text above to see its tokens."), "0 tokens", cut_note or ""
    ids = tokenizer.encode(text, allowed_special="all")  # (n_tokens,) from the from-scratch encoder
    reference = _reference_encoding(tokenizer).encode(text, allowed_special="all")
    pieces = [tokenizer.token_bytes(token_id) for token_id in ids[:MAX_DRAWN_TOKENS]]
    spans = token_spans_html(ids, pieces, max_tokens=MAX_DRAWN_TOKENS)
    stats = (
        f"**{plural(len(ids), 'token')}** · {plural(len(text), 'character')} · "
        f"{len(text) / max(len(ids), 1):.2f} characters per token · tokenizer: {tokenizer.name} "
        f"({tokenizer.vocab_size:,} ids)"
    )
    if cut_note:
        stats += f"  \n{cut_note}"
    return spans, stats, parity_message(ids, reference, tokenizer)


# ---------------------------------------------------------------------------------------------------------------
# 2. Train your own BPE
# ---------------------------------------------------------------------------------------------------------------


def training_text(source: str, text: str, upload: str | None) -> tuple[str, str]:
    """The text to train on and a short description of where it came from."""
    if source == SHAKESPEARE_SOURCE:
        return shakespeare_text(TRAIN_MAX_CHARS), "Shakespeare"
    if source == TEXT_SOURCE:
        if not text:
            raise ValueError("The text box in section 1 is empty; type some text there or pick another source.")
        return text, "the text above"
    if source == UPLOAD_SOURCE:
        if not upload:
            raise ValueError("Upload a .txt file first (or pick another source).")
        data, name = read_upload(upload, what="a .txt file", suffixes=(".txt",), max_bytes=MAX_UPLOAD_BYTES)
        return read_user_text(data, name, MAX_UPLOAD_BYTES), name
    raise ValueError(f"Unknown source {source!r}.")


def merge_rows(tokenizer: BPETokenizer, shown: int = SHOWN_MERGES) -> list:
    """(rank, pair, new_id, count) for the first and last `shown` merges, with None where rows are skipped."""
    merges = tokenizer.merges
    ranked = [(rank, m.pair, m.new_id, m.count) for rank, m in enumerate(merges, start=1)]
    if len(ranked) <= 2 * shown:
        return ranked
    return [*ranked[:shown], None, *ranked[-shown:]]


def train_bpe(vocab_size, source: str, text: str, upload: str | None, progress=gr.Progress()):  # noqa: B008 (Gradio idiom)
    """Train a byte-pair-encoding tokenizer of a chosen vocabulary size on Shakespeare, a text or an uploaded file.

    The session then tokenizes with it (tokenize with choice "Your trained BPE") and replays its merges.

    Args:
        vocab_size: the vocabulary size (257 = bytes only, up to the server's limit).
        source: what to learn from (the packaged Shakespeare, the text above, an uploaded .txt file).
        text: the text to learn from when source is the text above.
        upload: the uploaded .txt file when source is the upload, else None.

    Returns:
        A status line (merges learned, seconds), the table of the first merges (HTML) and the tokenizer choice.
    """
    vocab_size = number_input(vocab_size, "The vocabulary size", minimum=257, maximum=MAX_TRAIN_VOCAB, whole=True)
    corpus, where = training_text(source, text, upload)
    corpus, cut_note = cap_text(corpus, TRAIN_MAX_CHARS, what="training text")

    def report(done: int, total: int) -> None:
        progress(done / max(total, 1), desc=f"learning merge {done:,} of {total:,}")

    started = time.perf_counter()
    tokenizer = BPETokenizer.train(corpus, int(vocab_size), name=f"BPE {int(vocab_size)}", progress=report)
    seconds = time.perf_counter() - started
    n_merges = len(tokenizer.merges)
    status = (
        f"Learned **{n_merges:,} merges** from {len(corpus):,} characters of {where} in **{seconds:.2f} s**: "
        f"a vocabulary of {tokenizer.vocab_size:,} ids (256 bytes + {n_merges:,} merges + `<|endoftext|>`)."
    )
    if n_merges < int(vocab_size) - 257:
        status += f"  \nThe text ran out of pairs to merge before reaching {int(vocab_size):,} ids."
    if cut_note:
        status += f"  \n{cut_note}"
    table = merges_table_html(merge_rows(tokenizer), tokenizer.token_bytes)
    return tokenizer, status, table, gr.update(value=TRAINED_CHOICE)


@functools.lru_cache(maxsize=4)
def merge_ranks(tokenizer: BPETokenizer) -> dict[int, int]:
    """{new token id: its merge's rank (1 = learned first)}, built once per tokenizer (GPT-2 has 50,000 merges)."""
    return {merge.new_id: rank for rank, merge in enumerate(tokenizer.merges, start=1)}


def replay_merge(word: str = DEFAULT_WORD, step=None, trained: BPETokenizer | None = None):
    """Replay the BPE merges that turn one word into tokens, step by step, up to a given merge step.

    The word is cut to MAX_WORD_CHARS characters, so a replay stays a few milliseconds and at most ~150 kB.

    Args:
        word: the word to replay.
        step: the last merge step shown (None: all of them).
        trained: the session's own trained BPE (kept by the page after train_bpe).

    Returns:
        The replay table (HTML: the word's pieces after each merge) and the step slider's range and value.
    """
    tokenizer = trained or gpt2_tokenizer()
    which = "your trained BPE" if trained else "GPT-2 (train your own BPE above to replay its merges)"
    word, cut_note = cap_text(checked_text(word, "The word"), MAX_WORD_CHARS, what="word")
    # 4 bytes a character at most, so a word has fewer than 4 * MAX_WORD_CHARS merge steps.
    step = number_input(step, "The merge step", minimum=0, maximum=4 * MAX_WORD_CHARS, whole=True,
                        default=4 * MAX_WORD_CHARS)
    pieces = tokenizer.pretokenize(word)
    if not pieces:
        return _note("Type a word to watch BPE merge it."), gr.update(maximum=1, value=0)
    piece = pieces[0]
    trace = tokenizer.trace(piece)
    last_step = len(trace) - 1
    step = min(step, last_step)
    rank_of = merge_ranks(tokenizer)
    steps = [(s.tokens, s.merged_pair, s.new_id, rank_of.get(s.new_id)) for s in trace[: step + 1]]
    header = f"Replaying {token_text(piece.encode())!r} with {which}: step {step} of {last_step}."
    if len(pieces) > 1:
        header += f" BPE never merges across pieces, so only the first of {len(pieces)} pieces is shown."
    if cut_note:
        header += f" {cut_note}"
    body = merge_steps_html(steps, tokenizer.token_bytes)
    # The slider needs at least two stops to be draggable; a word that is a single byte has only step 0.
    return _note(header) + body, gr.update(maximum=max(last_step, 1), value=step)


def replay_steps_only(word: str = DEFAULT_WORD, step=None, trained: BPETokenizer | None = None) -> str:
    """The replay's html alone (while the slider moves: its own value stays as the student set it)."""
    return replay_merge(word, step, trained)[0]


def replay_word(word: str = DEFAULT_WORD, trained: BPETokenizer | None = None):
    """Replay all the BPE merges that turn a new word into tokens (GPT-2's, or the session's trained BPE).

    Args:
        word: the word to replay.
        trained: the session's own trained BPE (kept by the page after train_bpe).

    Returns:
        The replay table (HTML: the word's pieces after each merge) and the step slider's range and value.
    """
    return replay_merge(word, None, trained)


# ---------------------------------------------------------------------------------------------------------------
# 3. From tokens to training pairs
# ---------------------------------------------------------------------------------------------------------------


def windows_problem(n_tokens: int, context_length: int, stride: int) -> str | None:
    """Why no window can be cut (a note for section 3), or None when windows can be cut.

    >>> print(windows_problem(2, 8, 4))
    No windows yet: the text above has 2 tokens, and a window of 8 tokens needs 9 (8 inputs, and 1 more for the last target). Type a longer text in section 1 or lower the context length.
    """
    if stride < 1:
        return ("No windows: the stride is 0, so a window would never move on. Set the stride to 1 or more "
                "(it is how far each window moves).")
    if n_tokens < context_length + 1:
        return (f"No windows yet: the text above has {plural(n_tokens, 'token')}, and a window of "
                f"{plural(context_length, 'token')} needs {context_length + 1} ({context_length} inputs, and 1 "
                f"more for the last target). Type a longer text in section 1 or lower the context length.")
    return None


def redraw_text(text: str, choice: str, trained: BPETokenizer | None, context_length, stride) -> tuple:
    """A new text: its tokens (section 1) and its training windows (section 3), drawn in one request."""
    return (*tokenize_text(text, choice, trained), *training_pairs(text, context_length, stride))


def training_pairs(text: str = DEFAULT_TEXT, context_length=8, stride=4) -> tuple[str, str]:
    """Cut a text's GPT-2 tokens into the (input, target) windows a model trains on: the target is the input shifted by one.

    When no window can be cut (a short text, a stride of 0), this section says why in its summary: section 1's
    text box redraws it at every change, so a short text is normal here, not an error.

    Args:
        text: the text to cut into windows.
        context_length: tokens per window (1 to the server's limit).
        stride: tokens between the starts of two windows (0 cuts none).

    Returns:
        The first windows as a table of input and target tokens (HTML) and a summary (Markdown).
    """
    context_length = number_input(context_length, "The context length", minimum=1, maximum=MAX_CONTEXT, whole=True,
                                  default=8)
    stride = number_input(stride, "The stride", minimum=0, maximum=MAX_CONTEXT, whole=True, default=4)
    tokenizer = gpt2_tokenizer()
    text, cut_note = bounded_text(tokenizer, text, MAX_TEXT_CHARS)
    ids = tokenizer.encode(text, allowed_special="all")
    problem = windows_problem(len(ids), context_length, stride)
    if problem:
        return "", f"⚠ {problem}"
    n_windows = len(window_starts(len(ids), context_length, stride))
    pairs = windows(ids, context_length, stride, limit=SHOWN_WINDOWS)
    if stride < context_length:
        overlap = f"windows overlap by {plural(context_length - stride, 'token')}"
    elif stride == context_length:
        overlap = "windows touch without overlapping"
    else:
        skipped = stride - context_length
        overlap = f"{plural(skipped, 'token')} between windows {'is' if skipped == 1 else 'are'} never used"
    shown = f"Showing the first {len(pairs)}." if n_windows > len(pairs) else \
        ("Showing it." if n_windows == 1 else "Showing them all.")
    summary = (
        f"{plural(len(ids), 'token')} → **{plural(n_windows, 'window')}** of {plural(context_length, 'token')} "
        f"(stride {stride}: {overlap}). {shown}"
    )
    if cut_note:
        summary += f"  \n{cut_note}"
    return windows_html(pairs, tokenizer.token_bytes), summary


# ---------------------------------------------------------------------------------------------------------------
# 4. Embeddings
# ---------------------------------------------------------------------------------------------------------------


def repeated_token_note(ids: list[int], labels: list[str], tok_cos, inp_cos) -> str:
    """Point at the first token that appears twice: same token vector, different input vectors."""
    first_seen: dict[int, int] = {}
    for position, token_id in enumerate(ids):
        if token_id in first_seen:
            i, j = first_seen[token_id], position
            return (
                f"**{labels[j]!r}** is at positions {i} and {j}: the same token vector (cosine "
                f"{float(tok_cos[i, j]):.2f}) but different input vectors (cosine {float(inp_cos[i, j]):.2f}), "
                "because each position adds its own vector."
            )
        first_seen[token_id] = position
    return "No token repeats in this text; repeat a word to see one token get two different input vectors."


def embeddings(text: str = DEFAULT_EMBED_TEXT):
    """Turn a text's first 16 GPT-2 tokens into vectors: token embedding + position embedding = input embedding.

    Args:
        text: the text to embed.

    Returns:
        The shapes (Markdown), a heatmap of token, position and input vectors, and the tokens' cosine similarities.
    """
    tokenizer = gpt2_tokenizer()
    text, _ = bounded_text(tokenizer, text, MAX_EMBED_CHARS)
    ids = tokenizer.encode(text, allowed_special="all")
    if not ids:
        raise ValueError("Type a few words to embed, for example: the cat sat on the mat.")
    cut = len(ids) > MAX_EMBED_TOKENS
    ids = ids[:MAX_EMBED_TOKENS]
    labels = [token_text(tokenizer.token_bytes(token_id)) for token_id in ids]
    tok, pos, inp = input_embeddings(ids, tokenizer.vocab_size, emb_dim=EMB_DIM, context_length=MAX_EMBED_TOKENS)
    n = len(ids)
    shapes = (
        f"token embeddings ({n}, {EMB_DIM}) + positional embeddings ({n}, {EMB_DIM}) = "
        f"input embeddings ({n}, {EMB_DIM})"
    )
    if cut:
        shapes += f"  \nOnly the first {MAX_EMBED_TOKENS} tokens are embedded here."
    inp_cos = cosine_similarities(inp)
    note = repeated_token_note(ids, labels, cosine_similarities(tok), inp_cos)
    heatmaps = embedding_heatmaps(tok.numpy(), pos.numpy(), inp.numpy(), labels)
    cosine = cosine_heatmap(inp_cos.numpy(), labels, "cosine similarity of the input vectors")
    return f"**{shapes}**  \n{note}", heatmaps, cosine


# ---------------------------------------------------------------------------------------------------------------
# Layout and wiring
# ---------------------------------------------------------------------------------------------------------------


SMALL_VIEWS = {"concurrency_limit": 4, "concurrency_id": "token_views"}  # the replay and the embeddings


def build_tab() -> None:
    """Build the Tokenizer tab inside the current `gr.Tab`."""
    trained_state = gr.State(None, time_to_live=3 * 3600)  # this browser session's trained tokenizer

    # 1. Text -> tokens ------------------------------------------------------------------------------------------
    gr.Markdown("## 1. Text → tokens")
    explain(
        """
        A language model never sees letters. A **tokenizer** cuts the text into pieces (*tokens*) and gives each
        piece a number (its *id*). GPT-2's tokenizer knows 50,257 pieces: common words with their leading space
        (`·the`), parts of rare words, single bytes for anything else (an emoji takes several). Hover over a
        token to see its id and bytes; `·` is a space and `↵` a new line. The line below the tokens checks that
        this lab's from-scratch tokenizer gives exactly the ids of OpenAI's `tiktoken`.
        """
    )
    with gr.Row():
        text = gr.Textbox(value=DEFAULT_TEXT, label="Text", lines=4, max_lines=12, scale=4, elem_id="tok-text")
        with gr.Column(scale=1, min_width=200):
            choice = gr.Radio([GPT2_CHOICE, TRAINED_CHOICE], value=GPT2_CHOICE, label="Tokenizer")
            tokenize_button = gr.Button("Tokenize", variant="primary")
    gr.Examples([[example] for _, example in EXAMPLE_TEXTS], inputs=[text], label="Texts to try",
                example_labels=[label for label, _ in EXAMPLE_TEXTS], api_visibility="private",
                elem_id="tok-examples")
    first_spans, first_stats, first_parity = tokenize_text(DEFAULT_TEXT, GPT2_CHOICE)
    token_view = gr.HTML(first_spans, label="tokens", elem_id="tok-spans", css_template=TABLE_CSS)
    stats = gr.Markdown(first_stats, label="counts")
    parity = gr.Markdown(first_parity, label="tiktoken check", elem_id="tok-parity")
    show_source(BPETokenizer.encode, BPETokenizer.encode_ordinary, apply_merges, merge_steps, title="The encoder")

    # 2. Train your own BPE --------------------------------------------------------------------------------------
    gr.Markdown("## 2. Train your own BPE")
    explain(
        """
        **Byte-pair encoding** learns a vocabulary from text. Start from the 256 possible bytes; count every pair
        of neighbouring tokens; merge the most frequent pair into a new token; repeat until the vocabulary has the
        size you asked for. Frequent words end up as a single token, rare ones stay in pieces. Train one below,
        read its first and last merges, then replay how it builds a word, one merge at a time.
        """
    )
    with gr.Row():
        vocab_size = SliderBox(257, MAX_TRAIN_VOCAB, value=1000, step=1, label="Vocabulary size", scale=2)
        source = gr.Radio(
            [SHAKESPEARE_SOURCE, TEXT_SOURCE, UPLOAD_SOURCE], value=SHAKESPEARE_SOURCE, label="Train on", scale=2
        )
        upload = gr.File(label=f"A .txt file (up to {MAX_UPLOAD_BYTES // 1_000_000} MB)", file_types=[".txt"],
                         type="filepath", height=160, scale=1)
    train_button = gr.Button("Train BPE", variant="primary")
    train_status = gr.Markdown(f"Shakespeare is cut to its first {TRAIN_MAX_CHARS:,} characters to train fast.",
                               label="training status")
    merges_view = gr.HTML(label="merges table", css_template=TABLE_CSS, elem_id="tok-merges")
    gr.Markdown("### Replay the merges of one word")
    with gr.Row():
        word = gr.Textbox(value=DEFAULT_WORD, label="Word", scale=2)
        last_step = len(gpt2_tokenizer().trace(DEFAULT_WORD)) - 1
        replay_step = gr.Slider(0, last_step, value=last_step, step=1, label="Merge step", scale=3)
    first_replay, _ = replay_word(DEFAULT_WORD)
    replay_view = gr.HTML(first_replay, label="merge replay", css_template=TABLE_CSS, elem_id="tok-replay")
    show_source(BPETokenizer.train, train_merges, BPETokenizer.trace, title="Training and the merge trace")

    # 3. From tokens to training pairs ---------------------------------------------------------------------------
    gr.Markdown("## 3. From tokens to training pairs")
    explain(
        """
        To learn, the model reads a window of `context length` tokens and must guess, at every position, the
        token that comes next. So each **input** window has a **target** window: the same tokens moved one step
        to the left. The next window starts `stride` tokens later. These windows are cut from the text of
        section 1 (GPT-2 tokens).
        """
    )
    with gr.Row():
        context_length = gr.Slider(1, 64, value=8, step=1, label="Context length (tokens)")
        stride = gr.Slider(0, 64, value=4, step=1, label="Stride (tokens)")
    first_windows, first_summary = training_pairs(DEFAULT_TEXT, 8, 4)
    pairs_summary = gr.Markdown(first_summary, label="summary")
    pairs_view = gr.HTML(first_windows, label="input and target windows", css_template=TABLE_CSS, elem_id="tok-windows")
    show_source(SlidingWindowDataset, window_starts, title="The sliding-window dataset")

    # 4. Embeddings -------------------------------------------------------------------------------------------------
    gr.Markdown("## 4. Embeddings: from ids to vectors")
    explain(
        f"""
        Each id picks one row of a table of learned numbers: its **token embedding** (here {EMB_DIM} numbers;
        GPT-2 small uses 768). The model also needs to know *where* a token is, so a second table adds a vector
        per **position**. Their sum is what the transformer reads. These tables are random (seeded) as at the
        start of training, yet already the same word at two positions becomes two different vectors: see the
        cosine similarities below.
        """
    )
    with gr.Row():
        embed_text = gr.Textbox(value=DEFAULT_EMBED_TEXT, label="Text (first 16 tokens)", scale=4)
        embed_button = gr.Button("Embed", scale=1)
    first_summary, first_heatmaps, first_cosine = embeddings(DEFAULT_EMBED_TEXT)
    heatmaps = gr.Plot(first_heatmaps, label="token + positional = input", show_label=False,
                       elem_id="tok-embeddings")
    with gr.Row():
        cosine = gr.Plot(first_cosine, label="cosine similarity", show_label=False, scale=3)
        with gr.Column(scale=2):
            embed_summary = gr.Markdown(first_summary, label="shapes")
            explain(
                """
                **Reading the cosine map.** Each cell compares two input vectors: 1 means they point the same
                way, 0 unrelated, −1 opposite. The diagonal is each vector with itself (1). A word that appears
                twice would give 1 if only the token embedding counted; the positional vectors pull the two
                copies apart. Training later moves these vectors so that related words end up close.
                """
            )
    show_source(input_embeddings, cosine_similarities, title="The embedding lookup")

    # Wiring ------------------------------------------------------------------------------------------------------
    # Concurrency by cost: encoding the text (sections 1 and 3) takes 1-300 ms and has its own queue; the replay
    # and the embeddings take a few ms and share another, so they never wait behind long texts or BPE training.
    # preprocess=False where a handler takes numbers: it checks them itself (number_input), so NaN, infinity or
    # a word from an API client gets a plain message instead of Gradio's.
    tokenize_event = {
        "fn": tool(explore_view(tokenize_text), "tokenize"),
        "inputs": [text, choice, trained_state],
        "outputs": [token_view, stats, parity],
        "concurrency_limit": 4,
        "concurrency_id": "tokenize",
    }
    tokenize_button.click(**tokenize_event, api_name="tokenize")

    pairs_event = {
        "fn": tool(training_pairs, "training_pairs"),
        "inputs": [text, context_length, stride],
        "outputs": [pairs_view, pairs_summary],
        "preprocess": False,
        "concurrency_limit": 4,
        "concurrency_id": "tokenize",
    }
    context_length.release(**pairs_event, api_name="training_pairs")
    stride.release(**pairs_event, api_visibility="undocumented")
    for slider in (context_length, stride):  # the arrow keys send `input` (no `release`)
        slider.input(**pairs_event, trigger_mode="always_last", api_name=False)
    # A new text (typed, pasted, an example) or tokenizer redraws sections 1 and 3 in one event, sent by the hidden
    # redraw button. In class mode the teacher's text arrives with these views already drawn for the whole class,
    # and the page does not press it for that text (redraw_unless_drawn, ui/follow.py): following sends no event.
    redraw_event = {"fn": friendly(explore_view(redraw_text)),
                    "inputs": [text, choice, trained_state, context_length, stride],
                    "outputs": [token_view, stats, parity, pairs_view, pairs_summary], "preprocess": False,
                    "concurrency_limit": 4, "concurrency_id": "tokenize"}
    redraw = gr.Button("redraw", elem_id="tok-redraw", elem_classes=["lab-hidden"])
    redraw.click(**redraw_event, trigger_mode="always_last", api_name="redraw_text", api_visibility="undocumented")
    for changed in (text, choice):
        changed.change(None, [changed], None, js=redraw_unless_drawn("tok-redraw"))
    followed("tokenizer", {"text": text, "choice": choice, "context_length": context_length, "stride": stride},
             views=[redraw_event])  # class mode: the teacher's text and windows, drawn once for the class

    replay_outputs = [replay_view, replay_step]
    train_button.click(
        tool(train_bpe, "train_bpe"),
        inputs=[vocab_size, source, text, upload],
        outputs=[trained_state, train_status, merges_view, choice],
        api_name="train_bpe",
        concurrency_limit=2,  # training uses a whole CPU core; more at once only makes everyone wait
        concurrency_id="train_bpe",
        show_progress_on=[train_status],
    ).then(
        friendly(replay_word), [word, trained_state], replay_outputs,
        api_name="replay_after_training", api_visibility="undocumented", **SMALL_VIEWS,
    )
    replay_step.release(tool(replay_merge, "replay_merge"), [word, replay_step, trained_state], replay_outputs,
                        api_name="replay_merge", preprocess=False, **SMALL_VIEWS)
    # The arrow keys send `input` (no `release`); its answer leaves the slider alone, so a drag is never pulled back.
    replay_step.input(friendly(replay_steps_only), [word, replay_step, trained_state], replay_view, api_name=False,
                      preprocess=False, trigger_mode="always_last", **SMALL_VIEWS)
    word.submit(tool(replay_word, "replay_word"), [word, trained_state], replay_outputs, api_name="replay_word",
                preprocess=False, **SMALL_VIEWS)

    embed_event = {"fn": tool(embeddings, "embeddings"), "inputs": [embed_text], "outputs": [embed_summary, heatmaps, cosine],
                   **SMALL_VIEWS}
    embed_button.click(**embed_event, api_name="embeddings")
    embed_text.submit(**embed_event, api_visibility="undocumented")
