"""Instruction data for supervised fine-tuning (chapter 7): the Alpaca prompt, the dataset, the collate.

One record is a dict of three strings (``input`` may be empty)::

    {"instruction": "Reverse the order of the words.", "input": "red green blue", "output": "blue green red"}

``format_input(record) + format_response(record)`` is the text the model trains on::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    Reverse the order of the words.

    ### Input:
    red green blue

    ### Response:
    blue green red

Where the records come from (all offline except the last):

- ``gpt_core.instruct_tasks.generated_tasks(n, seed)``: tasks whose answers the code computes (arithmetic, word order, case, letter
  counts, spam or ham, ...), so exact-match scores before and after tuning are meaningful;
- ``load_user_json(data, max_bytes)``: a user's JSON file, validated with messages naming the record and field;
- ``book_instruction_data()``: the book's 1,100 records, downloaded once when online.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from gpt_core.corpora import download_cached
from gpt_core.data import split_list

IGNORE_INDEX = -100  # targets with this value add nothing to the loss (F.cross_entropy's default ignore_index)
GPT2_EOT_ID = 50256  # <|endoftext|> in GPT-2's vocabulary
RESPONSE_HEADER = "\n\n### Response:\n"
END_OF_TEXT = "<|endoftext|>"

# ---------------------------------------------------------------------------------------------------------------
# The Alpaca prompt (exactly the book's)
# ---------------------------------------------------------------------------------------------------------------


def format_input(entry: dict) -> str:
    """The prompt part of a record: preamble, instruction, and the input only when it is not empty.

    >>> format_input({"instruction": "Add 2 and 3.", "input": "", "output": "5"})
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\
\\n\\n### Instruction:\\nAdd 2 and 3.'
    """
    instruction_text = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry.get("input") else ""
    return instruction_text + input_text


def format_response(entry: dict) -> str:
    """The answer part: ``"\\n\\n### Response:\\n" + output``."""
    return f"{RESPONSE_HEADER}{entry['output']}"


def extract_response(generated_text: str) -> str:
    """The model's answer inside a generated text: after ``### Response:``, up to the next end-of-text, stripped.

    A model that goes on to write a new ``### Instruction`` section of its own is cut there too.

    >>> extract_response("...### Instruction:\\nAdd 2 and 3.\\n\\n### Response:\\n 5 <|endoftext|>junk")
    '5'
    """
    _, found, answer = generated_text.partition("### Response:")
    if not found:
        answer = generated_text
    answer = answer.split(END_OF_TEXT, 1)[0]
    answer = answer.split("\n\n### ", 1)[0]
    return answer.strip()


# ---------------------------------------------------------------------------------------------------------------
# Dataset and collate
# ---------------------------------------------------------------------------------------------------------------


class EncodedInstruction(NamedTuple):
    """The token ids of prompt + response, and how many of them belong to the prompt."""

    ids: list[int]
    prompt_length: int


def _encode(tokenizer, text: str) -> list[int]:
    """Encode text; an ``<|endoftext|>`` written inside a record is kept as plain text, never as the special id."""
    if hasattr(tokenizer, "encode_ordinary"):
        return tokenizer.encode_ordinary(text)
    return list(tokenizer.encode(text))


class InstructionDataset(Dataset):
    """Records -> ``EncodedInstruction(ids, prompt_length)``, encoded once when the dataset is made."""

    def __init__(self, records: Sequence[dict], tokenizer):
        self.records = list(records)
        self.encoded: list[EncodedInstruction] = []
        for entry in self.records:
            prompt_ids = _encode(tokenizer, format_input(entry))
            response_ids = _encode(tokenizer, format_response(entry))
            self.encoded.append(EncodedInstruction(prompt_ids + response_ids, len(prompt_ids)))

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> EncodedInstruction:
        return self.encoded[index]


def instruction_collate(batch, pad_id: int = GPT2_EOT_ID, ignore_index: int = IGNORE_INDEX,
                        allowed_max_length: int | None = None, mask_instruction: bool = False,
                        device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch of token-id lists into (inputs, targets), both (B, T), as in the book's chapter 7.

    Each sequence gets one end-of-text (``pad_id``) appended, then more of them up to the longest in the batch.
    Inputs drop the last token and targets drop the first (targets are the inputs shifted by one). In the
    targets, the FIRST end-of-text after each text stays (the model learns to stop), the padding after it
    becomes ``ignore_index``. Items may be plain id lists or ``EncodedInstruction``; with
    ``mask_instruction=True`` (which needs ``EncodedInstruction``) the targets that predict prompt tokens
    become ``ignore_index`` too, so only the response is learned. ``allowed_max_length`` cuts every row.

    >>> inputs, targets = instruction_collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])
    >>> inputs.tolist()
    [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    >>> targets.tolist()
    [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]
    """
    if len(batch) == 0:
        raise ValueError("instruction_collate needs at least one sequence.")
    seqs = [list(item.ids) if isinstance(item, EncodedInstruction) else list(item) for item in batch]
    if mask_instruction and not all(isinstance(item, EncodedInstruction) for item in batch):
        raise ValueError("mask_instruction=True needs EncodedInstruction items (ids + prompt_length), "
                         "such as the items of an InstructionDataset.")
    batch_max_length = max(len(ids) + 1 for ids in seqs)  # +1: the end-of-text every sequence gets
    inputs_list, targets_list = [], []
    for item, ids in zip(batch, seqs):
        padded = ids + [pad_id] * (batch_max_length - len(ids))  # (batch_max_length,)
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        targets[len(ids):] = ignore_index  # target len(ids) - 1 is the first end-of-text: kept
        if mask_instruction:
            targets[: item.prompt_length - 1] = ignore_index  # targets that would predict the prompt's tokens
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_list.append(inputs)
        targets_list.append(targets)
    return torch.stack(inputs_list).to(device), torch.stack(targets_list).to(device)  # (B, T), (B, T)


def split_records(records: Sequence[dict]) -> dict[str, list[dict]]:
    """The book's chapter-7 split: the first 85% to train, the next 10% to test, the last 5% to validate.

    >>> {name: len(part) for name, part in split_records([{}] * 1100).items()}
    {'train': 935, 'val': 55, 'test': 110}
    """
    train, test, val = split_list(records, (0.85, 0.10))
    return {"train": train, "val": val, "test": test}


# ---------------------------------------------------------------------------------------------------------------
# A user's JSON file
# ---------------------------------------------------------------------------------------------------------------

REQUIRED_FIELDS = ("instruction", "output")  # "input" may be missing: it then counts as ""
DEFAULT_MAX_JSON_BYTES = 5_000_000
MAX_RECORDS = 20_000  # the book's file has 1,100
MAX_JSON_DEPTH = 8  # a list of records of strings is 2 deep; far deeper nesting is refused before parsing
_JSON_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|[\[\]{}]')


def json_depth(text: str) -> int:
    """How deeply lists and objects nest in a JSON text (brackets inside strings do not count).

    >>> json_depth('[{"instruction": "Say [hi]", "output": "hi"}]')
    2
    """
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def validate_records(records) -> list[dict]:
    """Check a parsed JSON value: a non-empty list of objects with string instruction/output (and input)."""
    if not isinstance(records, list):
        raise ValueError(f"The JSON must be a list of records ([{{...}}, {{...}}]), but it is a "
                         f"{type(records).__name__}.")
    if not records:
        raise ValueError("The dataset is empty: the JSON list has no records.")
    if len(records) > MAX_RECORDS:
        raise ValueError(f"The file has {len(records):,} records; the limit is {MAX_RECORDS:,}. "
                         f"Upload a shorter list.")
    clean = []
    for index, entry in enumerate(records):
        if not isinstance(entry, dict):
            raise ValueError(f"Record {index} must be an object with \"instruction\", \"input\" and \"output\", "
                             f"but it is a {type(entry).__name__}.")
        for name in REQUIRED_FIELDS:
            if name not in entry:
                raise ValueError(f"Record {index} has no \"{name}\" field.")
        for name in ("instruction", "input", "output"):
            if name in entry and not isinstance(entry[name], str):
                raise ValueError(f"Record {index}: \"{name}\" must be a string, but it is a "
                                 f"{type(entry[name]).__name__} ({entry[name]!r:.40}).")
        if not entry["instruction"].strip():
            raise ValueError(f"Record {index}: \"instruction\" is empty.")
        clean.append({"instruction": entry["instruction"], "input": entry.get("input", ""),
                      "output": entry["output"]})
    return clean


def load_user_json(data: bytes, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> list[dict]:
    """Parse and validate an uploaded instruction file; bad input raises ValueError with a plain message.

    >>> load_user_json(b'[{"instruction": "Say hi.", "output": "hi"}]')
    [{'instruction': 'Say hi.', 'input': '', 'output': 'hi'}]
    """
    if len(data) > max_bytes:
        raise ValueError(f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes. "
                         "Upload a smaller file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"The file is not UTF-8 text (byte {error.start:,} cannot be read).") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"The JSON nests lists or objects more than {MAX_JSON_DEPTH} levels deep; an "
                         f"instruction file is a list of flat records. Upload a list of records.")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"The file is not valid JSON: {error.msg} at line {error.lineno}, "
                         f"column {error.colno}.") from None
    return validate_records(parsed)


# ---------------------------------------------------------------------------------------------------------------
# The book's instruction data (online only)
# ---------------------------------------------------------------------------------------------------------------

BOOK_INSTRUCTION_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json"
)
BOOK_INSTRUCTION_FILENAME = "instruction-data.json"
BOOK_INSTRUCTION_RECORDS = 1100
BOOK_INSTRUCTION_OFFLINE = ("The book's instruction data needs the internet once; "
                            "the generated tasks and your own JSON file work offline.")


def book_instruction_data(url: str = BOOK_INSTRUCTION_URL) -> list[dict]:
    """The book's 1,100 instruction records, downloaded once and then read from the cache.

    No published checksum could be confirmed offline, so the content is checked instead: the file must be a
    valid instruction dataset of exactly 1,100 records. Split it with ``split_records`` (935 / 55 / 110).
    Raises ConnectionError (with ``BOOK_INSTRUCTION_OFFLINE``) when there is no internet.
    """
    path = download_cached(url, BOOK_INSTRUCTION_FILENAME, max_bytes=DEFAULT_MAX_JSON_BYTES,
                           offline_message=BOOK_INSTRUCTION_OFFLINE)
    try:
        records = load_user_json(path.read_bytes())
        if len(records) != BOOK_INSTRUCTION_RECORDS:
            raise ValueError(f"it has {len(records):,} records, expected {BOOK_INSTRUCTION_RECORDS:,}")
    except ValueError as err:
        path.unlink(missing_ok=True)  # a broken download is not kept: the next call fetches it again
        raise ValueError(f"The downloaded instruction data is not the book's file ({err}).") from None
    return records
