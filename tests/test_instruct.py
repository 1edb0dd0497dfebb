"""Instruction tuning: the Alpaca prompt, the collate, generated tasks, JSON validation, the tuning loop."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_core import instruct_data, instruct_tasks
from gpt_core.events import DoneEvent, EvalEvent, SampleEvent, StepEvent
from gpt_core.instruct import (
    INSTRUCT_PRESETS,
    InstructConfig,
    exact_match_score,
    finetune_instruct,
    instruction_loss,
)
from gpt_core.instruct_data import (
    EncodedInstruction,
    InstructionDataset,
    extract_response,
    format_input,
    format_response,
    instruction_collate,
    load_user_json,
    split_records,
)
from gpt_core.instruct_tasks import generated_tasks
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer import BPETokenizer
from gpt_core.tokenizer_choice import ByteTokenizer

PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately completes "
            "the request.")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


# ----- the prompt ---------------------------------------------------------------------------------------------


def test_format_input_exactly_as_the_book():
    with_input = {"instruction": "Identify the correct spelling of the following word.", "input": "Ocassion",
                  "output": "The correct spelling is 'Occasion.'"}
    assert format_input(with_input) == (PREAMBLE + "\n\n### Instruction:\nIdentify the correct spelling of the "
                                        "following word.\n\n### Input:\nOcassion")
    assert format_response(with_input) == "\n\n### Response:\nThe correct spelling is 'Occasion.'"
    no_input = {"instruction": "What is an antonym of 'complicated'?", "input": "", "output": "'simple'."}
    assert format_input(no_input) == PREAMBLE + "\n\n### Instruction:\nWhat is an antonym of 'complicated'?"


def test_extract_response():
    prompt = format_input({"instruction": "Add 2 and 3.", "input": ""})
    assert extract_response(prompt + "\n\n### Response:\n5") == "5"
    assert extract_response(prompt + "\n\n### Response:\n  5 \n<|endoftext|>7") == "5"
    assert extract_response(prompt + "\n\n### Response:\n5\n\n### Instruction:\nmore") == "5"
    assert extract_response("### Response:\nred green\nblue<|endoftext|>") == "red green\nblue"
    assert extract_response("no header at all ") == "no header at all"


# ----- the collate --------------------------------------------------------------------------------------------

BOOK_BATCH = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def test_collate_matches_the_book():
    inputs, targets = instruction_collate(BOOK_BATCH)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]
    assert inputs.dtype == targets.dtype == torch.long


def test_collate_truncates_and_uses_the_pad_id():
    inputs, targets = instruction_collate(BOOK_BATCH, pad_id=99, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, 99], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, 99, -100], [8, 9, 99]]


def test_collate_masks_the_instruction():
    batch = [EncodedInstruction([0, 1, 2, 3, 4], 3), EncodedInstruction([5, 6], 1),
             EncodedInstruction([7, 8, 9], 2)]
    inputs, targets = instruction_collate(batch, mask_instruction=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    # prompt lengths 3, 1, 2: the first 2, 0, 1 targets predict prompt tokens and are masked
    assert targets.tolist() == [[-100, -100, 3, 4, 50256], [6, 50256, -100, -100, -100],
                                [-100, 9, 50256, -100, -100]]
    _, unmasked_targets = instruction_collate(batch)  # without mask_instruction: the book's targets
    assert unmasked_targets.tolist() == instruction_collate(BOOK_BATCH)[1].tolist()
    with pytest.raises(ValueError, match="mask_instruction=True needs EncodedInstruction items"):
        instruction_collate(BOOK_BATCH, mask_instruction=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=12), min_size=1, max_size=5))
def test_collate_keeps_exactly_one_end_of_text_per_row(batch):
    inputs, targets = instruction_collate(batch)
    longest = max(len(ids) for ids in batch)
    assert inputs.shape == targets.shape == (len(batch), longest)
    for ids, row in zip(batch, targets.tolist()):
        assert row[: len(ids)] == ids[1:] + [50256]
        assert row[len(ids):] == [-100] * (longest - len(ids))


def test_instruction_dataset_knows_the_prompt_length():
    tokenizer = BPETokenizer.gpt2()
    record = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    item = InstructionDataset([record], tokenizer)[0]
    assert item.ids == tokenizer.encode(format_input(record) + format_response(record))
    assert item.prompt_length == len(tokenizer.encode(format_input(record)))
    assert tokenizer.decode(item.ids[item.prompt_length:]) == "\n\n### Response:\n5"


def test_split_records_book_sizes():
    parts = split_records([{"i": i} for i in range(1100)])
    assert {name: len(part) for name, part in parts.items()} == {"train": 935, "val": 55, "test": 110}
    assert parts["test"][0] == {"i": 935} and parts["val"][0] == {"i": 1045}


# ----- generated tasks ----------------------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _letter(instruction: str) -> str:
    return re.search(r"letter '(.)'", instruction).group(1)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _quoted(instruction: str) -> str:
    return re.search(r"'(\w+)'", instruction).group(1)


# Each task's answer recomputed from the record's text: (instruction, input) -> expected output.
CHECKS = {
    "is_uppercase": lambda ins, inp: _yes_no(inp.isupper()),
    "letter_case": lambda ins, inp: "capital" if inp.isupper() else "small",
    "has_number": lambda ins, inp: _yes_no(any(word.isdigit() for word in inp.split())),
    "number_or_word": lambda ins, inp: "number" if inp.isdigit() else "word",
    "question_or_statement": lambda ins, inp: "question" if inp.endswith("?") else "statement",
    "copy": lambda ins, inp: inp,
    "first_word": lambda ins, inp: inp.split()[0],
    "last_word": lambda ins, inp: inp.split()[-1],
    "repeat_word": lambda ins, inp: " ".join([inp] * (2 if "twice" in ins else 3)),
    "uppercase": lambda ins, inp: inp.upper(),
    "contains_word": lambda ins, inp: _yes_no(_quoted(ins) in inp.split()),
    "add": lambda ins, inp: sum(_numbers(ins)),
    "subtract": lambda ins, inp: (lambda a, b: b - a if ins.startswith("Subtract") else a - b)(*_numbers(ins)),
    "multiply": lambda ins, inp: _numbers(ins)[0] * _numbers(ins)[1],
    "reverse_words": lambda ins, inp: " ".join(inp.split()[::-1]),
    "sort_words": lambda ins, inp: " ".join(sorted(inp.split())),
    "change_case": lambda ins, inp: inp.upper() if "upper" in ins or "capital letters" in ins else inp.title(),
    "count_letter": lambda ins, inp: inp.count(_letter(ins)),
    "word_length": lambda ins, inp: len(re.search(r"'(\w+)'", ins).group(1)),
    "largest_number": lambda ins, inp: max(_numbers(inp)),
    "first_letters": lambda ins, inp: "".join(w[0] for w in inp.split()).upper(),
}


@pytest.mark.parametrize("task", sorted(instruct_tasks.TASKS))
def test_generated_tasks_answers_are_correct(task):
    records = generated_tasks(40, seed=11, tasks=[task])
    assert records == generated_tasks(40, seed=11, tasks=[task])
    assert len({(r["instruction"], r["input"]) for r in records}) > 10  # varied phrasings and values
    if task == "spam_or_ham":
        from gpt_core.spam_data import load_sms_spam

        labelled = set(load_sms_spam())
        assert all((r["output"], r["input"]) in labelled for r in records)
        return
    for record in records:
        assert record["output"] == str(CHECKS[task](record["instruction"], record["input"])), record
    if task in instruct_tasks.EASY_TASKS or task == "contains_word":  # two answers, about half each
        outputs = [record["output"] for record in records]
        assert len(set(outputs)) == 2 and 10 <= outputs.count(outputs[0]) <= 30


# Two records of each task for seed 0, written out: what a student sees in the table, answer included.
EXAMPLES = {
    "is_uppercase": [("Is the text written in uppercase? Answer yes or no.", "stone yellow", "no"),
                     ("Is the text in capital letters? Answer yes or no.", "mountain basket", "no")],
    "letter_case": [("Capital or small letters?", "stone yellow", "small"),
                    ("Is the text in capital or small letters?", "mountain basket", "small")],
    "has_number": [("Is there a number in the text? Answer yes or no.", "stone 39 coffee", "yes"),
                   ("Does the text contain a number? Answer yes or no.", "garden bridge piano compass", "no")],
    "number_or_word": [("Is this a number or a word?", "button", "word"), ("Number or word?", "island", "word")],
    "question_or_statement": [("Question or statement?", "Is the button here?", "question"),
                              ("Is this a question or a statement?", "Is the dragon new?", "question")],
    "copy": [("Copy the input.", "stone yellow coffee", "stone yellow coffee"),
             ("Repeat the text.", "mountain basket meadow", "mountain basket meadow")],
    "first_word": [("Which word comes first?", "stone yellow coffee island", "stone"),
                   ("Write the first word.", "basket meadow mirror coffee", "basket")],
    "last_word": [("Which word comes last?", "stone yellow coffee island", "island"),
                  ("Write the last word.", "basket meadow mirror coffee", "coffee")],
    "repeat_word": [("Repeat the word twice.", "button", "button button"),
                    ("Repeat the word three times.", "orange", "orange orange orange")],
    "uppercase": [("Convert the text to uppercase.", "stone yellow", "STONE YELLOW"),
                  ("Write the text in capital letters.", "mountain basket", "MOUNTAIN BASKET")],
    "contains_word": [("Does the list contain 'coffee'? Answer yes or no.", "stone yellow coffee island", "yes"),
                      ("Does the list contain 'coffee'? Answer yes or no.", "coffee garden bridge", "yes")],
}


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_generated_tasks_seed_fixed_examples(task):
    expected = [{"instruction": ins, "input": inp, "output": out} for ins, inp, out in EXAMPLES[task]]
    assert generated_tasks(2, seed=0, tasks=[task]) == expected


def test_task_sets_cover_every_task_once():
    sets = instruct_tasks.TASK_SETS
    assert sets["easy"] == ("is_uppercase", "letter_case", "has_number", "number_or_word", "question_or_statement")
    assert sets["copy"] == ("copy", "first_word", "last_word", "repeat_word", "uppercase", "contains_word")
    assert "add" in sets["hard"] and "spam_or_ham" in sets["hard"] and len(sets["hard"]) == 11
    names = [name for tasks in sets.values() for name in tasks]
    assert sorted(names) == sorted(instruct_tasks.TASKS) and len(names) == len(set(names))
    mixed = generated_tasks(400, seed=5, tasks=instruct_tasks.EASY_TASKS)
    kinds = {"yes", "no", "capital", "small", "number", "word", "question", "statement"}
    assert {record["output"] for record in mixed} == kinds  # every easy task, both answers


def test_generated_tasks_are_deterministic_and_mixed():
    records = generated_tasks(300, seed=11)
    assert records == generated_tasks(300, seed=11)
    assert records != generated_tasks(300, seed=12)
    assert len(instruct_tasks.TASKS) == 22
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert all(isinstance(v, str) for r in records for v in r.values())
    assert len({r["instruction"] for r in records}) > 100
    assert any(r["input"] for r in records) and any(not r["input"] for r in records)


def test_generated_tasks_examples_and_errors():
    assert generated_tasks(1, seed=0, tasks=["add"]) == [
        {"instruction": "What is 97 plus 53?", "input": "", "output": "150"}]
    assert {r["output"] for r in generated_tasks(40, seed=1, tasks=["spam_or_ham"])} == {"spam", "ham"}
    with pytest.raises(ValueError, match=r"Unknown task\(s\) \['poetry'\]"):
        generated_tasks(3, tasks=["poetry"])
    with pytest.raises(ValueError, match="at least 1, got 0"):
        generated_tasks(0)


# ----- a user's JSON ------------------------------------------------------------------------------------------


def _json(value) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("data, message", [
    (_json({"instruction": "x"}), "The JSON must be a list of records ([{...}, {...}]), but it is a dict."),
    (_json([]), "The dataset is empty: the JSON list has no records."),
    (_json([{"instruction": "a", "output": "b"}, "text"]),
     'Record 1 must be an object with "instruction", "input" and "output", but it is a str.'),
    (_json([{"instruction": "a", "output": "b"}, {"instruction": "c"}]), 'Record 1 has no "output" field.'),
    (_json([{"output": "b"}]), 'Record 0 has no "instruction" field.'),
    (_json([{"instruction": "a", "input": 3, "output": "b"}]), 'Record 0: "input" must be a string, but it is a int'),
    (_json([{"instruction": "a", "input": "", "output": ["b"]}]), 'Record 0: "output" must be a string'),
    (_json([{"instruction": "  ", "output": "b"}]), 'Record 0: "instruction" is empty.'),
    (b'[{"instruction": "a",', "The file is not valid JSON: Expecting property name enclosed in double quotes "
                               "at line 1, column 22."),
    (b"\xff\xfe[", "The file is not UTF-8 text"),
    (_json([{"instruction": "a" * 200, "output": "b"}]), "The file is 236 bytes; the limit is 100 bytes. Upload a smaller file."),
])
def test_load_user_json_messages(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_user_json(data, max_bytes=100 if len(data) > 200 else 1000)


def test_load_user_json_accepts_a_good_file():
    data = _json([{"instruction": "Say hi.", "input": "", "output": "hi", "extra": 1},
                  {"instruction": "Add.", "output": "2"}])
    assert load_user_json(data) == [{"instruction": "Say hi.", "input": "", "output": "hi"},
                                    {"instruction": "Add.", "input": "", "output": "2"}]


def test_book_data_offline_message(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_LAB_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError, match="The book's instruction data needs the internet once"):
        instruct_data.book_instruction_data(url="http://127.0.0.1:9/instruction-data.json")


def test_book_data_read_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_LAB_CACHE", str(tmp_path))
    records = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(1100)]
    (tmp_path / "instruction-data.json").write_bytes(_json(records))
    assert instruct_data.book_instruction_data(url="http://127.0.0.1:9/x") == records
    (tmp_path / "instruction-data.json").write_bytes(_json(records[:5]))
    with pytest.raises(ValueError, match="not the book's file \\(it has 5 records, expected 1,100\\)"):
        instruct_data.book_instruction_data(url="http://127.0.0.1:9/x")
    assert not (tmp_path / "instruction-data.json").exists()


# ----- loss and the tuning loop -------------------------------------------------------------------------------




def tiny_model(context_length=256) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig(vocab_size=256, context_length=context_length, emb_dim=32, n_heads=2, n_layers=2))


def test_loss_ignores_masked_targets_and_never_gives_nan():
    model = tiny_model(context_length=16)
    inputs = torch.tensor([[1, 2, 3, 4]])
    all_masked = torch.full((1, 4), -100)
    assert instruction_loss(model, (inputs, all_masked)).item() == 0.0
    targets = torch.tensor([[2, 3, -100, -100]])
    logits = model(inputs)
    expected = torch.nn.functional.cross_entropy(logits[0, :2], targets[0, :2])
    assert instruction_loss(model, (inputs, targets)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_short_instruction_run_lowers_val_loss():
    records = generated_tasks(40, seed=3, tasks=["add"])
    splits = {"train": records[:32], "val": records[32:]}
    config = InstructConfig(epochs=2, lr=2e-3, batch_size=8, eval_every=4, eval_batches=1, device="cpu",
                            autocast="off", mask_instruction=True, sample_tokens=5)
    model = tiny_model()
    events = list(finetune_instruct(model, ByteTokenizer(), splits["train"], config, val_records=splits["val"]))
    assert events[0].kind == "start" and isinstance(events[-1], DoneEvent) and events[-1].reason == "max_steps"
    assert [e.step for e in events if isinstance(e, StepEvent)] == list(range(1, 9))
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [4, 8]
    samples = [e for e in events if isinstance(e, SampleEvent)]
    assert [e.step for e in samples] == [4, 8]
    assert samples[0].prompt == format_input(splits["val"][0])
    print("val loss:", [e.val_loss for e in evals])
    assert evals[-1].val_loss < evals[0].val_loss


def test_exact_match_score_counts_right_answers(monkeypatch):
    import gpt_core.instruct as instruct

    def always_five(model, idx, max_new_tokens, **kwargs):
        """A stand-in for generate: every answer is ' 5', end-of-text (id 0), then junk."""
        assert kwargs["temperature"] == 0.0 and kwargs["eos_id"] == 0
        return torch.cat([idx, torch.tensor([32, 53, 0, 65])])

    monkeypatch.setattr(instruct, "generate", always_five)
    records = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
               {"instruction": "Add 1 and 1.", "input": "", "output": "2"},
               {"instruction": "Add 0 and 5.", "input": "", "output": " 5 "}]
    result = exact_match_score(tiny_model(), ByteTokenizer(), records, max_new_tokens=4)
    assert (result.correct, result.total, result.score) == (2, 3, 2 / 3)
    assert [row["answer"] for row in result.rows] == ["5", "5", "5"]
    assert [row["correct"] for row in result.rows] == [True, False, True]


def test_instruct_presets():
    book = INSTRUCT_PRESETS["book-gpt2-medium"]
    assert (book.epochs, book.lr, book.weight_decay, book.batch_size, book.eval_every) == (2, 5e-5, 0.1, 8, 5)
    assert (book.mask_instruction, book.grad_clip, book.answer_tokens) == (False, None, 40)
    classroom = INSTRUCT_PRESETS["classroom"]
    assert (classroom.epochs, classroom.lr, classroom.weight_decay, classroom.batch_size) == (3, 1e-3, 0.1, 16)
    assert (classroom.eval_every, classroom.eval_batches, classroom.grad_clip) == (25, 2, 1.0)
    assert (classroom.mask_instruction, classroom.sample_tokens, classroom.answer_tokens) == (True, 16, 16)
    assert (classroom.allowed_max_length, classroom.trainable, classroom.seed) == (None, "all", 123)


def test_scoring_writes_at_most_the_presets_answer_tokens(monkeypatch):
    import gpt_core.instruct as instruct

    asked = []

    def never_stops(model, idx, max_new_tokens, **kwargs):
        asked.append(max_new_tokens)
        return torch.cat([idx, torch.full((max_new_tokens,), 65)])

    monkeypatch.setattr(instruct, "generate", never_stops)
    records = generated_tasks(20, seed=3, tasks=["has_number"])
    config = InstructConfig(epochs=1, batch_size=8, eval_every=0, device="cpu", autocast="off", sample_tokens=3,
                            answer_tokens=5)
    events = list(finetune_instruct(tiny_model(), ByteTokenizer(), records[:16], config,
                                    score_records=records[16:]))
    scores = [event for event in events if event.kind == "exact_match"]
    assert [event.when for event in scores] == ["before", "after"]
    assert scores[0].rows[0]["answer"] == "AAAAA" and asked == [5] * 4 + [3] + [5] * 4
