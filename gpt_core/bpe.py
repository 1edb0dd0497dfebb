"""Byte-pair encoding, the lesson: count the pairs, merge the most frequent one, repeat (karpathy/minbpe's BPE).

A word is a list of ids; ids 0..255 stand for single bytes. A merge ``(left, right) -> new_id`` gives two
neighbouring ids one new id. Training learns the merges from text (``train_merges``); encoding replays them
on new text, the earliest-learned merge first (``apply_merges``). The words are pre-tokens (pieces such as
``" world"``, cut by ``gpt_core.tokenizer``), so a merge never crosses a word boundary.

These loops are written to be read. ``gpt_core.fast.bpe`` holds their fast versions (heap training, cached
incremental encoding), which are tested to give the same merges and the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass


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
    """One step of encoding a single word: the tokens after applying ``merged_pair -> new_id``."""

    tokens: list[int]
    merged_pair: tuple[int, int] | None
    new_id: int | None


# ---------------------------------------------------------------------------------------------------
# The two building blocks
# ---------------------------------------------------------------------------------------------------


def get_pair_counts(
    ids: list[int], counts: dict | None = None, weight: int = 1
) -> dict[tuple[int, int], int]:
    """Count each neighbouring pair of ids (``weight`` times per occurrence), adding to ``counts`` if given.

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}

    A word that occurs 3 times in the text counts 3 times, on top of the counts so far:

    >>> get_pair_counts([5, 5], {(5, 5): 1}, weight=3)
    {(5, 5): 4}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    >>> merge_pair([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]

    Overlapping pairs go to the leftmost one:

    >>> merge_pair([7, 7, 7], (7, 7), 9)
    [9, 7]
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


def report_progress(progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` about 100 times over a training run, and at its last merge."""
    if progress is not None and (done % max(1, total // 100) == 0 or done == total):
        progress(done, total)


# ---------------------------------------------------------------------------------------------------
# Training: learn the merges from text
# ---------------------------------------------------------------------------------------------------


def train_merges(
    words: list[list[int]],
    word_counts: list[int],
    num_merges: int,
    token_bytes: dict[int, bytes],
    progress: Callable[[int, int], None] | None = None,
) -> list[Merge]:
    """Learn up to ``num_merges`` merges from the words (pre-tokens as id lists) and how often each occurs.

    Each round merges the most frequent neighbouring pair; on a tie, the smallest pair (smallest left id,
    then smallest right id), so the same text always gives the same merges. A pair whose bytes already spell
    a token is never merged, so every token has its own bytes. ``token_bytes`` (id -> bytes) gains each new
    token. Training stops early when no pair is left. Example, the word "aaabdaaabac" once:

    >>> token_bytes = {b: bytes([b]) for b in range(256)}
    >>> merges = train_merges([list(b"aaabdaaabac")], [1], 3, token_bytes)
    >>> [(merge.pair, merge.new_id, merge.count) for merge in merges]
    [((97, 97), 256, 4), ((97, 98), 257, 2), ((256, 257), 258, 2)]
    >>> token_bytes[258]
    b'aaab'

    "aa" occurs 4 times (overlaps count); then "aa"+"a" and "a"+"b" both occur twice, and the smaller
    pair (97, 98) wins the tie.
    """
    first_id = max(token_bytes) + 1  # new ids continue after the existing tokens
    known_tokens = set(token_bytes.values())
    merges: list[Merge] = []
    while len(merges) < num_merges:
        # 1. count every neighbouring pair, each word weighted by how often it occurs in the text
        pair_counts: dict[tuple[int, int], int] = {}
        for word, count in zip(words, word_counts):
            get_pair_counts(word, pair_counts, weight=count)
        # 2. keep the pairs that would make a new token (their bytes spell no token yet)
        candidates = [pair for pair in pair_counts if token_bytes[pair[0]] + token_bytes[pair[1]] not in known_tokens]
        if not candidates:
            break  # every word is a single token: nothing left to merge
        # 3. take the most frequent pair; a tie goes to the smallest pair
        pair = min(candidates, key=lambda pair: (-pair_counts[pair], pair))
        # 4. it becomes a new token, with the next id
        new_id = first_id + len(merges)
        merges.append(Merge(pair, new_id, pair_counts[pair]))
        token_bytes[new_id] = token_bytes[pair[0]] + token_bytes[pair[1]]
        known_tokens.add(token_bytes[new_id])
        # 5. replace the pair by the new token in every word, then count again
        words = [merge_pair(word, pair, new_id) for word in words]
        report_progress(progress, len(merges), num_merges)
    return merges


# ---------------------------------------------------------------------------------------------------
# Encoding: replay the merges on a new word
# ---------------------------------------------------------------------------------------------------


def merge_steps(ids: list[int], merge_ids: dict[tuple[int, int], int]) -> Iterator[TraceStep]:
    """Encode one word step by step: each step merges, at every place, the pair that was learned first.

    ``merge_ids`` maps each learned pair to its new id. New ids grow in the order the merges were
    learned, so the smallest new id is the merge learned first (its rank).

    >>> merge_ids = {(97, 97): 256, (97, 98): 257, (256, 257): 258}  # "aa", "ab", "aa" + "ab"
    >>> for step in merge_steps([97, 97, 97, 98], merge_ids):  # "aaab"
    ...     print(step.merged_pair, "->", step.new_id, step.tokens)
    (97, 97) -> 256 [256, 97, 98]
    (97, 98) -> 257 [256, 257]
    (256, 257) -> 258 [258]
    """
    while len(ids) >= 2:
        # 1. of the neighbouring pairs, take the one learned first (a pair never learned ranks last)
        pair = min(zip(ids, ids[1:]), key=lambda pair: merge_ids.get(pair, math.inf))
        # 2. if even that pair was never learned, the word is fully encoded
        if pair not in merge_ids:
            return
        # 3. merge it at every place, left to right, and hand back this step
        ids = merge_pair(ids, pair, merge_ids[pair])
        yield TraceStep(ids, pair, merge_ids[pair])


def apply_merges(ids: list[int], merge_ids: dict[tuple[int, int], int]) -> list[int]:
    """Encode one word: the ids after the last of its ``merge_steps`` (a new list; ``ids`` is not changed).

    >>> apply_merges([97, 97, 97, 98], {(97, 97): 256, (97, 98): 257, (256, 257): 258})
    [258]
    >>> apply_merges([97, 99], {(97, 97): 256})  # no learned pair: one id per byte
    [97, 99]
    """
    ids = list(ids)
    for step in merge_steps(ids, merge_ids):
        ids = step.tokens
    return ids
