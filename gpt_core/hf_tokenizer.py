"""An LLM Lab BPE written in Hugging Face's tokenizer format, so that ``transformers.AutoTokenizer`` loads it.

Both files describe the same byte-level BPE, in two ways:

- LLM Lab's ``lab_tokenizer.json`` (``BPETokenizer.save``, ``"format": "llm-lab-bpe"``) names tokens by their
  *ids*: ``byte_ids[b]`` is the id of byte ``b``, and each merge says ``pair (left id, right id) -> new_id``.
- Hugging Face's ``tokenizer.json`` (the ``tokenizers`` library) names tokens by *strings*: ``vocab`` maps each
  token's string to its id, and ``merges`` lists pairs of strings, earliest merge first. A token's string is
  its bytes written with GPT-2's printable stand-in characters (``bytes_to_unicode``), so a space is "Ġ":

  >>> token_string(b" the"), token_string(b"\\n\\n")
  ('Ġthe', 'ĊĊ')

To convert, each token's bytes are turned into that string and keep their id; each merge
``(left, right) -> new_id`` becomes the line ``"<left string> <right string>"``. Merges are applied in the
same order (their rank) by both libraries, so the same text gives the same ids. The pre-tokenization pattern
goes into a ``Split`` step, and special tokens such as ``<|endoftext|>`` into ``added_tokens``.

This module writes JSON only; it never needs the ``tokenizers`` package (the tests use it to check the files).
"""

from __future__ import annotations

from gpt_core.gpt2_vocab import ENDOFTEXT, GPT2_PATTERN, bytes_to_unicode
from gpt_core.tokenizer import BPETokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"

_BYTE_TO_CHAR = bytes_to_unicode()


def token_string(token_bytes: bytes) -> str:
    """A token's bytes as Hugging Face's byte-level vocabulary writes them: one printable character per byte.

    >>> token_string(b"hello"), token_string(" café".encode())  # é is two bytes, 0xC3 0xA9
    ('hello', 'ĠcafÃ©')
    """
    return "".join(_BYTE_TO_CHAR[b] for b in token_bytes)


def hf_vocab(tokenizer: BPETokenizer) -> dict[str, int]:
    """Every token's string -> its id (the same id as in ``tokenizer``), special tokens included.

    >>> vocab = hf_vocab(BPETokenizer.train("aaabdaaabac", 259))
    >>> vocab["a"], vocab["aa"], vocab["ab"], vocab["<|endoftext|>"], len(vocab)
    (97, 256, 257, 258, 259)
    """
    vocab = {}
    for token_id in range(tokenizer.vocab_size):
        if token_id in tokenizer.special_tokens.values():
            continue
        try:
            vocab[token_string(tokenizer.token_bytes(token_id))] = token_id
        except ValueError:  # an id no token uses (a gap): Hugging Face needs no entry for it
            continue
    for token, token_id in tokenizer.special_tokens.items():
        if vocab.setdefault(token, token_id) != token_id:
            raise ValueError(f"The special token {token!r} is spelled like the ordinary token {vocab[token]}; "
                             f"Hugging Face's vocabulary cannot hold both.")
    return vocab


def hf_merges(tokenizer: BPETokenizer) -> list[str]:
    """The merges as ``"left right"`` strings, earliest-learned first (the rank Hugging Face applies them by).

    >>> hf_merges(BPETokenizer.train("aaabdaaabac", 259))
    ['a a', 'a b']
    """
    return [" ".join(token_string(tokenizer.token_bytes(part)) for part in merge.pair)
            for merge in tokenizer.merges]


def hf_pre_tokenizer(pattern: str) -> dict:
    """Cut text with the tokenizer's regular expression, then turn each piece into byte-level characters.

    GPT-2's own pattern is built into ``ByteLevel`` (``use_regex``), as in GPT-2's file on the Hub; any other
    pattern runs first as a ``Split`` that keeps each match as its own piece ("isolated").
    """
    if pattern == GPT2_PATTERN:
        return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }


def special_tokens_by_id(tokenizer: BPETokenizer) -> list[tuple[str, int]]:
    return sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])


def special_token(token: str) -> dict:
    """How tokenizers describes a special token: matched whole, as written, never split."""
    return {"content": token, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": True}


def hf_tokenizer_json(tokenizer: BPETokenizer) -> dict:
    """The whole ``tokenizer.json``: no normalizer, the pre-tokenizer, the BPE model, a byte-level decoder."""
    added_tokens = [{"id": token_id, **special_token(token)} for token, token_id in special_tokens_by_id(tokenizer)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": hf_pre_tokenizer(tokenizer.pattern),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": hf_vocab(tokenizer), "merges": hf_merges(tokenizer),
        },
    }


def special_tokens_map(tokenizer: BPETokenizer) -> dict[str, str]:
    """GPT-2's convention: ``<|endoftext|>`` is the bos, eos and unk token (none when the tokenizer lacks it)."""
    if ENDOFTEXT not in tokenizer.special_tokens:
        return {}
    return {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT}


def hf_tokenizer_config(tokenizer: BPETokenizer, model_max_length: int) -> dict:
    """``tokenizer_config.json``: which class loads ``tokenizer.json`` and the settings around it.

    ``PreTrainedTokenizerFast`` takes ``tokenizer.json`` exactly as written (``GPT2Tokenizer`` would rebuild
    GPT-2's own pre-tokenizer). ``clean_up_tokenization_spaces`` stays off so that decoding gives back the
    exact text.
    """
    added_tokens_decoder = {str(token_id): special_token(token) for token, token_id in special_tokens_by_id(tokenizer)}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "added_tokens_decoder": added_tokens_decoder,
        **special_tokens_map(tokenizer),
    }
