"""The fast layer of BPE: the same merges and the same ids as ``gpt_core.bpe``, computed with less work.

- ``train_merges_with_heap`` replaces ``gpt_core.bpe.train_merges`` (count updates and a heap instead of
  recounting every pair after each merge).
- ``apply_merges_incremental`` replaces ``gpt_core.bpe.apply_merges`` (looks up only the two pairs a merge
  changes instead of rescanning the word).
- ``CachedEncoder`` replaces the book's per-word encode loop in ``BPETokenizer.encode_ordinary`` (remembers
  each word's ids, and takes a word that is a whole token in one look-up).

``BPETokenizer`` uses these by default; ``LLM_LAB_PLAIN=1`` (``gpt_core.fast.settings``) switches them off.
``tests/test_fast_bpe.py`` checks each one against the book function it replaces.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from gpt_core.bpe import Merge, merge_pair, report_progress

MAX_CACHE_ENTRIES = 200_000  # a CachedEncoder forgets every word it remembers when it holds more than this

Pair = tuple[int, int]


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------


def train_merges_with_heap(
    words: list[list[int]],
    word_counts: list[int],
    num_merges: int,
    token_bytes: dict[int, bytes],
    progress: Callable[[int, int], None] | None = None,
) -> list[Merge]:
    """Replaces ``gpt_core.bpe.train_merges``: same arguments, same merges (ties included), much faster.

    Why it is faster: the book loop recounts every pair of every word after each merge. Here
    ``pair_counts`` is kept up to date instead: only the words that contain the merged pair change, so only
    their pairs are subtracted and added back. ``pair_words`` says which words contain a pair, and a heap of
    ``(-count, pair)`` gives the most frequent pair, the smallest on a tie (a popped entry whose count is out
    of date is skipped). ``words`` is updated in place.

    >>> token_bytes = {b: bytes([b]) for b in range(256)}
    >>> merges = train_merges_with_heap([list(b"aaabdaaabac")], [1], 3, token_bytes)
    >>> [(merge.pair, merge.new_id, merge.count) for merge in merges]
    [((97, 97), 256, 4), ((97, 98), 257, 2), ((256, 257), 258, 2)]
    """
    pair_counts: dict[Pair, int] = defaultdict(int)
    pair_words: dict[Pair, set[int]] = defaultdict(set)
    for word_index, (word, count) in enumerate(zip(words, word_counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            pair_words[pair].add(word_index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    known_tokens = set(token_bytes.values())
    next_id = max(token_bytes) + 1
    merges: list[Merge] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # out-of-date entry: the pair's count changed since it was pushed
        new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
        if new_bytes in known_tokens:
            del pair_counts[pair]  # would spell an existing token again: never merge this pair
            continue
        new_id = next_id
        next_id += 1
        merges.append(Merge(pair, new_id, -neg_count))
        token_bytes[new_id] = new_bytes
        known_tokens.add(new_bytes)
        _merge_in_words(pair, new_id, words, word_counts, pair_counts, pair_words, heap)
        report_progress(progress, len(merges), num_merges)
    return merges


def _merge_in_words(pair, new_id, words, word_counts, pair_counts, pair_words, heap) -> None:
    """Merge ``pair`` in every word that contains it and update the pair counts (and the heap) to match."""
    count_changes: dict[Pair, int] = defaultdict(int)
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


# ---------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------


def apply_merges_incremental(ids: list[int], merge_ids: dict[Pair, int]) -> list[int]:
    """Replaces ``gpt_core.bpe.apply_merges``: same ids, a new list, with fewer look-ups.

    Why it is faster: the book loop looks up every pair of the word after each merge. Here
    ``merge_ids_here[i]`` holds the new id of the pair ``(ids[i], ids[i + 1])`` (infinity if it never
    merges); after a merge at ``i`` only the two pairs touching the new token change, so only those two
    entries are looked up again. Merging the leftmost place first and repeating gives the same result as
    merging all places at once, because a pair that contains the new token always merges later than the
    new token itself.

    >>> apply_merges_incremental([97, 97, 97, 98], {(97, 97): 256, (97, 98): 257, (256, 257): 258})
    [258]
    """
    ids = list(ids)
    lookup = merge_ids.get
    merge_ids_here = [lookup(pair, math.inf) for pair in zip(ids, ids[1:])]
    while merge_ids_here:
        new_id = min(merge_ids_here)
        if new_id == math.inf:
            break  # no learned merge applies any more
        i = merge_ids_here.index(new_id)  # leftmost place of the best pair
        ids[i : i + 2] = [new_id]
        touching = []  # new ids of the pairs (left neighbour, new) and (new, right neighbour)
        if i > 0:
            touching.append(lookup((ids[i - 1], new_id), math.inf))
        if i + 1 < len(ids):
            touching.append(lookup((new_id, ids[i + 1]), math.inf))
        merge_ids_here[max(i - 1, 0) : i + 2] = touching
    return ids


class CachedEncoder:
    """Replaces the book's loop in ``BPETokenizer.encode_ordinary`` (``gpt_core.bpe.apply_merges`` on each word).

    Why it is faster, with the same ids:

    1. The same words come back again and again (" the", " and", ","): each word's ids are remembered the
       first time (up to ``max_entries`` words, then the memory starts again empty).
    2. A word that is a whole token (most English words with GPT-2) is that token: one look-up, no merge
       loop. tiktoken has the same shortcut; the merges would reach that token anyway (a test checks every
       token).
    3. Other words go through ``apply_merges_incremental``.

    >>> encoder = CachedEncoder(vocab={97: b"a", 98: b"b", 256: b"ab"}, byte_ids=range(256),
    ...                         merge_ids={(97, 98): 256})
    >>> encoder.encode(["ab", "aab", "ab"])
    [256, 97, 256, 256]
    >>> sorted(encoder.cache)
    ['aab', 'ab']
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        byte_ids: Iterable[int],
        merge_ids: dict[Pair, int],
        max_entries: int = MAX_CACHE_ENTRIES,
    ):
        self.id_of_bytes = {token: token_id for token_id, token in vocab.items()}
        self.byte_ids = list(byte_ids)
        self.merge_ids = merge_ids
        self.max_entries = max_entries
        self.cache: dict[str, tuple[int, ...]] = {}

    def encode_word(self, word: str) -> tuple[int, ...]:
        """The ids of one word (pre-token), without the cache."""
        word_bytes = word.encode("utf-8")
        whole_id = self.id_of_bytes.get(word_bytes)
        if whole_id is not None:
            return (whole_id,)
        return tuple(apply_merges_incremental([self.byte_ids[b] for b in word_bytes], self.merge_ids))

    def encode(self, words: Iterable[str]) -> list[int]:
        """The ids of the words, one after the other."""
        ids: list[int] = []
        cache = self.cache
        if len(cache) > self.max_entries:
            cache.clear()
        for word in words:
            word_ids = cache.get(word)
            if word_ids is None:
                word_ids = cache[word] = self.encode_word(word)
            ids.extend(word_ids)
        return ids
