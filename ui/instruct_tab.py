"""Instruct tab (chapter 7): supervised fine-tuning on Alpaca-format records, with the loss mask made visible.

Every record becomes one text (instruction prompt + response). The model learns it like pretraining text,
except that some targets are -100: padding always, and the prompt when "mask the instruction" is on.
The run starts from a copy of the model in the shared picker and goes through the server's job manager.
"""

from __future__ import annotations

import copy
import html
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import gradio as gr

from gpt_core.device import pick_device
from gpt_core.events import ExactMatchEvent
from gpt_core.fast import speed_up_for_training
from gpt_core.finetune_loop import FinetuneRun
from gpt_core.instruct import (
    INSTRUCT_PRESETS,
    InstructConfig,
    answer,
    exact_match_score,
    finetune_instruct,
    instruction_loss,
)
from gpt_core.instruct_data import (
    BOOK_INSTRUCTION_OFFLINE,
    DEFAULT_MAX_JSON_BYTES,
    IGNORE_INDEX,
    EncodedInstruction,
    InstructionDataset,
    book_instruction_data,
    format_input,
    format_response,
    instruction_collate,
    load_user_json,
    split_records,
)
from gpt_core.instruct_tasks import COPY_TASKS, EASY_TASKS, HARD_TASKS, generated_tasks
from ui import models
from ui.api import (
    SYNC_RUN_QUEUE,
    RunTimer,
    Stopwatch,
    current_job_id,
    finite,
    kept_by_run,
    model_zip,
    run_summary,
    sync_run_limit,
    tool,
    wait_for_run,
    zip_or_note,
)
from ui.budgets import BudgetStore, env_number, register_store
from ui.common import NumberBox, SliderBox, explain, friendly, learning_rate, number_input, show_source
from ui.jobs import JobView
from ui.models import LoadedModel, gpt2_tokenizer, load_choice, model_bytes, token_strings
from ui.run_tab import RunHistory, RunTab, with_note
from ui.runs import browser_id_state, job_manager, owner_of, pin_torch_threads, sharing_cores
from ui.uploads import read_upload
from ui.zerogpu import on_cpu_on_zero_gpu
from visualizations.finetune import MASK_CSS, loss_mask_html, mask_roles
from visualizations.training import training_figure

JOB_LABEL = "instruct"
GENERATED, GENERATED_COPY, GENERATED_HARD = "generated", "generated-copy", "generated-hard"
UPLOAD, BOOK = "upload", "book"
GENERATED_SETS = {GENERATED: EASY_TASKS, GENERATED_COPY: COPY_TASKS, GENERATED_HARD: HARD_TASKS}
DATA_SOURCES = [
    ("generated · spot a feature (capitals? a number? a question?): the bundled model learns these in ~150 steps",
     GENERATED),
    ("generated · copy from the input (repeat the text, first or last word, capitals): several hundred steps",
     GENERATED_COPY),
    ("generated · compute (arithmetic, sorting, letter counts, spam or ham): beyond a small model", GENERATED_HARD),
    ("your JSON file (upload below)", UPLOAD),
    ("the book's instruction-data.json (1,100 records, needs the internet once)", BOOK),
]
# What each generated set asks, and what a small model makes of it (shown under the data summary).
SET_NOTES = {
    GENERATED: ("*Spot a feature*: is the input in capital letters, does it hold a number, is it a question? The "
                "answer is one of two words, and the model only has to notice that some kind of token (capitals, "
                "digits, a question mark) is somewhere in the input: the bundled model learns it in ~150 steps."),
    GENERATED_COPY: ("*Copy from the input*: repeat the text or a word, pick the first or last word, write it in "
                     "capitals, find a word. A model must first grow an attention head that copies; the bundled "
                     "model has none yet (its loss on a repeated random sequence does not drop the second time), "
                     "so expect near 0% in a classroom-size run."),
    GENERATED_HARD: ("*Compute*: arithmetic, sorting, counting letters, spam or ham. The answer is nowhere in the "
                     "prompt and must be worked out; a 2.6M-parameter model learns the answer's form (a number, a "
                     "word, then stop) but rarely the answer: exact match stays near 0%, as it should."),
}
DEFAULT_RECORDS = 960  # 816 to train: 3 epochs of 51 batches of 16 with the classroom preset
MAX_GENERATED = 2000
DATA_SEED = 123
MAX_JSON_BYTES = DEFAULT_MAX_JSON_BYTES
EXTRA_PADDING = 3  # the mask view pads its example as if the batch's longest example were 3 tokens longer
EVAL_RECORDS = 20  # held-out records answered before and after tuning (exact match)
COMPARE_ROWS = 8  # of which this many are shown side by side
ANSWER_TOKENS = 40  # the most tokens an answer may have when scored (the preset's answer_tokens, if fewer)
SHOWN_RECORDS = 5
COMPARE_HEADERS = ["instruction", "input", "expected", "before tuning", "after tuning"]

# What to expect from each kind of model in the picker (the plan and the run's notes name the model used).
BUNDLED, RANDOM_INIT, GPT2, EXPLORER = "bundled", "random-init", "GPT-2", "explorer"
EXPECT = {
    BUNDLED: ("the bundled Shakespeare GPT (2.6M parameters, its own 4,096-token BPE) has never seen an "
              "instruction. With the classroom preset it learns the answer's form (one word, then "
              "`<|endoftext|>` to stop) in ~50 steps and the *spot a feature* tasks in ~150: expect 0% before and "
              "most answers (70-95% over 9 seeds) right after, in about a minute on a 2-core CPU. It cannot copy words "
              "from its prompt yet (the *copy* tasks need far longer), and arithmetic, counting and spam are beyond "
              "it."),
    RANDOM_INIT: ("an untrained model (random weights) knows no English and no token's meaning. It learns the "
                  "answer's form first (a short answer, then stop) and may come to spot a feature or two; expect "
                  "far fewer exact answers than the bundled model gets."),
    GPT2: ("GPT-2 was pretrained on 40 GB of web text: it knows English and can copy, so the *copy* tasks are "
           "within its reach. On a CPU each of its steps costs many times the bundled model's (124M or 355M "
           "parameters against 2.6M): use the book's preset on a GPU, or few records."),
    EXPLORER: ("a model pretrained in the Pretrain tab: small and new to instructions, like the bundled one. How "
               "much it learns depends on how long it was pretrained; expect the answer's form first."),
}

INTRO = """
### Instruct: teach the GPT to follow instructions
Each record (*instruction*, optional *input*, *output*) is written in the **Alpaca prompt** format and the model
is trained on the whole text, exactly like pretraining: every position predicts the next token. Batches are
padded with `<|endoftext|>`; the first one stays as a target (so the model learns to **stop**), the rest
become **-100**, which the loss ignores. With **mask the instruction** on, the targets inside the prompt are
-100 too, so only the response is learned. Below, each box is one position: the input token on top, the target
it must predict underneath. Then fine-tune a copy of the model chosen at the top and compare its answers to
the same held-out prompts before and after.
"""

# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def load_records(source: str, n_records: float, file_path: str | None) -> list[dict]:
    """The records of the chosen source; bad input raises ValueError with the engine's plain message."""
    if source in GENERATED_SETS:
        return generated_tasks(number_input(n_records, "The number of generated records", minimum=1,
                                            maximum=MAX_GENERATED, whole=True), seed=DATA_SEED,
                               tasks=GENERATED_SETS[source])
    if source == UPLOAD:
        if not file_path:
            raise ValueError("Upload a JSON file first (a list of {\"instruction\", \"input\", \"output\"} "
                             "records), or choose the generated tasks.")
        data, _ = read_upload(file_path, what="a .json file", suffixes=(".json",), max_bytes=MAX_JSON_BYTES)
        return load_user_json(data, MAX_JSON_BYTES)
    if source == BOOK:
        try:
            return book_instruction_data()
        except ConnectionError:
            raise ConnectionError(BOOK_INSTRUCTION_OFFLINE) from None
    raise ValueError(f"Unknown data source {source!r}.")


def default_records() -> list[dict]:
    """The records the page opens with: DEFAULT_RECORDS of the *spot a feature* tasks (the same every time)."""
    return generated_tasks(DEFAULT_RECORDS, seed=DATA_SEED, tasks=GENERATED_SETS[GENERATED])


# Uploaded and downloaded datasets live on the server under a budget; the page's state holds only a marker.
# Generated records are made again from their set and count (the same seed gives the same records).
DATASETS = register_store(BudgetStore(
    "instruction dataset", int(env_number("LLM_LAB_KEPT_DATASETS", 60)),
    env_number("LLM_LAB_DATASETS_MEMORY_MB", 500) * 1e6))


def records_bytes(records: list[dict]) -> int:
    """Roughly the memory a list of records takes (strings plus about 600 bytes of dict per record)."""
    return sum(600 + sum(sys.getsizeof(value) for value in entry.values()) for entry in records)


def keep_records(owner: str, source: str, records: list[dict]) -> dict:
    """Keep this browser's records; return the small marker the page's state holds."""
    if source in GENERATED_SETS:
        return {"source": source, "count": len(records)}
    DATASETS.put(owner, "records", records, size_bytes=records_bytes(records))
    return {"source": source, "count": len(records)}


def is_stored(marker) -> bool:
    """True when a marker points at records kept on the server (an upload or the book's data)."""
    return isinstance(marker, dict) and marker["source"] not in GENERATED_SETS


def records_of(owner: str | None, marker) -> list[dict]:
    """The records behind a page's marker (None: the default generated records)."""
    if isinstance(marker, list):  # called from Python with the records themselves
        return marker
    if not marker:
        return default_records()
    if marker["source"] in GENERATED_SETS:
        return generated_tasks(marker["count"], seed=DATA_SEED, tasks=GENERATED_SETS[marker["source"]])
    return DATASETS.get(owner, "records", missing="Your instruction data is no longer on the server: load it again.")


def data_summary(records: list[dict], source: str | None = GENERATED) -> str:
    splits = split_records(records)
    summary = (f"**{len(records):,} records** → train {len(splits['train']):,} · validation {len(splits['val']):,} "
               f"· test {len(splits['test']):,} (the book's 85% / 5% / 10%; the test records are held out and "
               f"answered before and after tuning).")
    return f"{summary}\n\n{SET_NOTES[source]}" if source in SET_NOTES else summary


def records_table(records: list[dict]) -> list[list[str]]:
    return [[entry["instruction"], entry.get("input", ""), entry["output"]] for entry in records[:SHOWN_RECORDS]]


# ---------------------------------------------------------------------------------------------------------------
# The model in the picker: its kind (for the notes) and its tokenizer (for the mask view)
# ---------------------------------------------------------------------------------------------------------------


def model_kind(choice: str | None) -> str:
    """BUNDLED, RANDOM_INIT, GPT2 or EXPLORER for a picker label (unknown labels count as explorer models).

    >>> model_kind(models.DEFAULT_CHOICE), model_kind("Random init · nano (untrained)")
    ('bundled', 'random-init')
    """
    found = next((c for c in models.MODEL_CHOICES if c.label == choice), None)
    if found is not None and found.build is models.bundled_model:
        return BUNDLED
    if found is not None and found.built_in:
        return RANDOM_INIT
    if found is not None and choice.startswith("GPT-2"):
        return GPT2
    return EXPLORER


def expect_note(choice: str | None) -> str:
    """What to expect from the picker's model, naming it."""
    return f"**What to expect from {literal(choice or 'the chosen model')}**: {EXPECT[model_kind(choice)]}"


def tokenizer_of(choice: str | None):
    """The picker's model's tokenizer, without loading (or downloading) a model that is not loaded yet."""
    if choice in models._loaded:
        return models._loaded[choice].tokenizer
    found = next((c for c in models.MODEL_CHOICES if c.label == choice), None)
    if found is None:
        return models.bundled_tokenizer()
    return (found.tokenizer or gpt2_tokenizer)()


def tokenizer_name(tokenizer) -> str:
    if tokenizer is gpt2_tokenizer():
        return f"GPT-2's BPE ({tokenizer.vocab_size:,} token ids)"
    if tokenizer is models.bundled_tokenizer():
        return f"the bundled model's BPE ({tokenizer.vocab_size:,} token ids, trained on Shakespeare)"
    return f"the model's own tokenizer ({tokenizer.vocab_size:,} token ids)"


@dataclass
class MaskView:
    html: str
    note: str
    n_targets: int
    n_ignored: int


def mask_view(entry: dict, tokenizer, mask_instruction: bool, context_length: int | None = None) -> MaskView:
    """One record collated as instruction_collate does it, padded by EXTRA_PADDING tokens, with its roles."""
    item = InstructionDataset([entry], tokenizer)[0]
    longer = EncodedInstruction(item.ids + [0] * EXTRA_PADDING, item.prompt_length)  # a longer batch neighbour
    inputs, targets = instruction_collate([item, longer], pad_id=tokenizer.eot_id, ignore_index=IGNORE_INDEX,
                                          allowed_max_length=context_length, mask_instruction=mask_instruction)
    input_ids, target_ids = inputs[0].tolist(), targets[0].tolist()  # row 0: our record
    roles = mask_roles(target_ids, len(item.ids), item.prompt_length, IGNORE_INDEX)
    target_tokens = token_strings(tokenizer, [t if t != IGNORE_INDEX else tokenizer.eot_id for t in target_ids])
    html = loss_mask_html(token_strings(tokenizer, input_ids), target_tokens, roles)
    n_ignored = sum(t == IGNORE_INDEX for t in target_ids)
    n_padding, n_masked = roles.count("padding"), roles.count("masked")
    note = (f"{len(item.ids)} tokens ({item.prompt_length} prompt + {len(item.ids) - item.prompt_length} response), "
            f"padded by {EXTRA_PADDING}. **{len(target_ids) - n_ignored} of {len(target_ids)} targets count** "
            f"for the loss; **{n_ignored} are -100** ({n_padding} padding + {n_masked} instruction).")
    if context_length is not None and len(item.ids) + EXTRA_PADDING > context_length:
        note += f" ⚠ Cut to the model's {context_length}-token context window."
    return MaskView(html, note, len(target_ids), n_ignored)


def preview_data(source: str, n_records: float, file_path: str | None, index: float, mask_instruction: bool,
                 browser_id: str | None = None, request: gr.Request = None):
    """Load instruction data (generated tasks, an uploaded JSON or the book's data) and show its split, records and loss mask.

    The mask view uses the default (bundled) model's tokenizer; the page then redraws it with the tokenizer of the
    model in the picker when that is another one.

    Args:
        source: where the records come from (the generated task sets, an uploaded JSON file, the book's data).
        n_records: how many records to generate (generated sets only).
        file_path: the uploaded JSON file (a list of instruction, input, output records), else None.
        index: which training record the loss-mask view shows.
        mask_instruction: mask the instruction so only the response's tokens count for the loss.
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The records' split (Markdown), the first records (table), the loss-mask view (HTML), its note, the record
        slider and the record as plain text.
    """
    owner = owner_of(browser_id, request) if source not in GENERATED_SETS else None
    records = load_records(source, n_records, file_path)
    n_train = len(split_records(records)["train"])
    batch_size = INSTRUCT_PRESETS["classroom"].batch_size
    if n_train < batch_size:
        gr.Warning(f"Only {n_train} of these {len(records)} records go to training, fewer than one batch of "
                   f"{batch_size}: add records before fine-tuning.")
    marker = keep_records(owner, source, records)
    return (data_summary(records, source), records_table(records),
            *mask_outputs(records, index, mask_instruction, tokenizer_of(models.DEFAULT_CHOICE)), marker)


def show_mask(marker, index: float, mask_instruction: bool, browser_id: str | None = None,
              choice: str | None = None, request: gr.Request = None):
    """The loss-mask view of one training record, tokenized by the picker's model: (html, note, slider, text)."""
    owner = owner_of(browser_id, request) if is_stored(marker) else None
    return mask_outputs(records_of(owner, marker), index, mask_instruction, tokenizer_of(choice))


def show_mask_of_model(marker, index: float, mask_instruction: bool, browser_id: str | None = None,
                       choice: str | None = None, request: gr.Request = None):
    """After a data load (drawn with the default model's tokenizer): redraw only when the picker has another one."""
    if tokenizer_of(choice) is tokenizer_of(models.DEFAULT_CHOICE):
        return (gr.skip(),) * 4
    return show_mask(marker, index, mask_instruction, browser_id, choice, request)


@dataclass
class MaskPanel:
    """What the mask section shows for one training record."""

    html: str
    note: str
    index: int
    last_index: int
    text: str
    n_targets: int = 0  # the record's targets, padding included
    n_ignored: int = 0  # of which -100 (padding, and the instruction when it is masked)


def mask_panel(records: list[dict], index: float, mask_instruction: bool, tokenizer=None) -> MaskPanel:
    tokenizer = tokenizer or tokenizer_of(models.DEFAULT_CHOICE)
    train = split_records(records)["train"] or records
    index = number_input(index, "The record number", minimum=0, maximum=10**9, whole=True, default=0)
    index = min(index, len(train) - 1)
    view = mask_view(train[index], tokenizer, bool(mask_instruction))
    note = f"Training record {index} of {len(train):,}, in the tokens of {tokenizer_name(tokenizer)}: {view.note}"
    return MaskPanel(view.html, note, index, max(len(train) - 1, 1),
                     format_input(train[index]) + format_response(train[index]), view.n_targets, view.n_ignored)


def mask_outputs(records: list[dict], index: float, mask_instruction: bool, tokenizer=None):
    panel = mask_panel(records, index, mask_instruction, tokenizer)
    return panel.html, panel.note, gr.update(maximum=panel.last_index, value=panel.index), panel.text


def instruct_loss_mask(source: str = GENERATED, n_records: float = DEFAULT_RECORDS, file_path: str | None = None,
                       index: float = 0, mask_instruction: bool = True, choice: str | None = None):
    """Show one instruction-tuning record as the model trains on it: its input tokens, its targets and which count.

    Targets of -100 (the padding and, when masked, the instruction) are ignored by the loss. Needs no browser
    state: the records are loaded from the source each call.

    Args:
        source: where the records come from (the generated task sets, an uploaded JSON file, the book's data).
        n_records: how many records to generate (generated sets only).
        file_path: the uploaded JSON file (a list of instruction, input, output records), else None.
        index: which training record (0 = the first; cut to the last one).
        mask_instruction: mask the instruction so only the response's tokens count for the loss.
        choice: the model whose tokenizer cuts the record into tokens (a label of the model menu).

    Returns:
        The loss-mask view (HTML: each input token over its target, coloured by role), a note with the counts,
        and a dict with the record number, the record as text, the number of targets and how many are -100.
    """
    records = load_records(source, n_records, file_path)
    panel = mask_panel(records, index, mask_instruction, tokenizer_of(choice or models.DEFAULT_CHOICE))
    data = {"index": panel.index, "last_index": panel.last_index, "text": panel.text,
            "n_targets": panel.n_targets, "n_ignored": panel.n_ignored,
            "n_counted": panel.n_targets - panel.n_ignored, "mask_instruction": bool(mask_instruction)}
    return panel.html, panel.note, data


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def instruct_config(preset: str, epochs: float, lr: float, mask_instruction: bool,
                    n_train: int) -> tuple[InstructConfig, str | None]:
    if preset not in INSTRUCT_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(INSTRUCT_PRESETS)}.")
    epochs = number_input(epochs, "The number of epochs", minimum=1, maximum=10, whole=True)
    config = replace(INSTRUCT_PRESETS[preset], epochs=epochs, lr=learning_rate(lr),
                     mask_instruction=bool(mask_instruction))
    if n_train < config.batch_size:
        raise ValueError(f"There are {n_train} training records, fewer than one batch of {config.batch_size}. "
                         f"Use more records (the training split is 85% of them).")
    steps, note = job_manager().clamp_steps(config.epochs * (n_train // config.batch_size))
    return (replace(config, max_steps=steps) if note else config), note


def run_steps(config: InstructConfig, n_train: int) -> int:
    """The optimizer steps a run takes: whole batches per epoch times epochs, or the server's cap."""
    return config.max_steps or config.epochs * (n_train // config.batch_size)


def answer_tokens(config: InstructConfig) -> int:
    """The longest answer written when scoring: the preset's answer_tokens, at most ANSWER_TOKENS."""
    return min(ANSWER_TOKENS, config.answer_tokens)


@dataclass
class TunedModel:
    model: object  # the instruction-tuned GPTModel, eval mode
    tokenizer: object
    label: str  # the model it started from
    job_id: str  # the run that tuned it


# Each browser's latest tuned model (for its download), under a count and memory budget (least recently used
# go first).
TUNED_MODELS = register_store(BudgetStore(
    "instruction-tuned model", int(env_number("LLM_LAB_KEPT_TUNED_MODELS", 30)),
    env_number("LLM_LAB_TUNED_MODELS_MEMORY_GB", 3) * 1e9))
NO_TUNED_MODEL = "There is no fine-tuned model yet: press Start fine-tuning above and wait until the run finishes."
TUNED_ZIP_LABEL = "fine-tuned model (zip: model.safetensors + config.json + lab_tokenizer.json)"


def tuned_zip(tuned: TunedModel) -> str:
    """The tuned model as a zip: model.safetensors, config.json (gpt_core.checkpoints.load_checkpoint reads the
    unzipped folder) and lab_tokenizer.json."""
    return model_zip(tuned.model, tuned.tokenizer, f"llm-lab-instruct-{tuned.label}",
                     extra={"fine_tuned_from": tuned.label, "job_id": tuned.job_id})


def instruct_job(loaded: LoadedModel, config: InstructConfig, splits: dict[str, list[dict]], owner: str | None = None):
    """The job body: score the held-out records, tune a copy of the model, score them again; the tuned model is
    kept as ``owner``'s latest (for its download)."""
    config = on_cpu_on_zero_gpu(config)  # ZeroGPU: fine-tuning does not train in GPU calls yet (ui.zerogpu)
    eval_records = splits["test"][:EVAL_RECORDS]

    def run(stop: threading.Event) -> Iterator:
        pin_torch_threads()
        model = copy.deepcopy(loaded.model)  # the shared, cached model is never modified
        speed_up_for_training(model, pick_device(config.device))
        for event in sharing_cores(finetune_instruct(model, loaded.tokenizer, splits["train"], config, stop,
                                                     val_records=splits["val"] or None, score_records=eval_records,
                                                     score_tokens=answer_tokens(config))):
            if owner is not None and event.kind == "done" and event.reason != "nan":
                model.eval()
                TUNED_MODELS.put(owner, "latest", TunedModel(model, loaded.tokenizer, loaded.label, current_job_id()),
                                 size_bytes=model_bytes(model))
            yield event

    return run


RUN = RunTab(JOB_LABEL, "instruction-tuning run", n_views=3)


def start_run(choice: str | None, preset: str, epochs: float, lr: float, mask_instruction: bool,
              records: list[dict] | None, history: RunHistory | None, browser_id: str | None,
              request: gr.Request = None):
    """Start instruction tuning a copy of the chosen model on the loaded records in the background (poll with instruct_poll).

    Scripts that want one call use instruct_run instead.

    Args:
        choice: the model to start from (a label of the model menu).
        preset: the run's preset (classroom, or the book's GPT-2 medium settings).
        epochs: passes over the training records (1 to 10).
        lr: learning rate.
        mask_instruction: mask the instruction so only the response's tokens count for the loss.
        records: the loaded records (kept by the page; None: the default generated tasks).
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A status line with the job id, and the poll timer.
    """
    if not choice:
        raise ValueError("No model is loaded: pick a model in the menu at the top of the page first.")
    owner = RUN.owner_for_start(history, browser_id, request)
    records = records_of(owner, records)
    splits = split_records(records)
    if not splits["test"]:
        gr.Warning("The data is too small to hold out test records: no exact-match score this time.")
    loaded = load_choice(choice)
    config, note = instruct_config(preset, epochs, lr, mask_instruction, len(splits["train"]))
    history = RUN.start(owner, instruct_job(loaded, config, splits, owner), loaded.label, start_note=note)
    started = (f"Started instruction tuning a copy of **{loaded.label}** on {len(splits['train']):,} records, "
               f"{run_steps(config, len(splits['train'])):,} steps ({history.job_id}); first it answers the "
               f"{min(len(splits['test']), EVAL_RECORDS)} held-out prompts.")
    return with_note(started, note), history, gr.Timer(active=True)


def instruct_run(choice: str | None, preset: str, epochs: float, lr: float, mask_instruction: bool,
                 source: str = GENERATED, n_records: float = DEFAULT_RECORDS, file_path: str | None = None,
                 request: gr.Request = None) -> tuple[dict, str | None]:
    """Instruction-tune a copy of a model and wait until the run ends (for scripts and agents).

    The run goes through the server's job queue and caps (steps, minutes per run) and belongs to the caller's
    session; no browser state is needed.

    Args:
        choice: the model to start from (a label of the model menu).
        preset: the run's preset (classroom, or the book's GPT-2 medium settings).
        epochs: passes over the training records (1 to 10).
        lr: learning rate.
        mask_instruction: mask the instruction so only the response's tokens count for the loss.
        source: where the records come from (the generated task sets, an uploaded JSON file, the book's data).
        n_records: how many records to generate (generated sets only).
        file_path: the uploaded JSON file (a list of instruction, input, output records), else None.

    Returns:
        A summary dict: job id, status, steps, final train and validation loss, the exact-match score on the
        held-out records before and after tuning (with each answer), seconds and settings; and the tuned model as
        a zip file (model.safetensors, config.json, lab_tokenizer.json; gpt_core.checkpoints.load_checkpoint reads
        it), or None when the run kept no model (notes say why).
    """
    clock = Stopwatch()
    records = load_records(source, n_records, file_path)
    _, history, _ = start_run(choice, preset, epochs, lr, mask_instruction, records, None, None, request)
    owner = owner_of(None, request)
    history = wait_for_run(owner, history)
    if history.status == "failed":
        raise ValueError(f"The run failed: {history.error}")

    def score(result: ExactMatchEvent | None) -> dict | None:
        if result is None:
            return None
        return {"correct": result.correct, "total": result.total, "score": finite(result.score),
                "rows": result.rows}

    settings = {"model": choice, "preset": preset, "epochs": epochs, "lr": lr,
                "mask_instruction": bool(mask_instruction), "source": source, "records": len(records)}
    summary = run_summary(history, clock.seconds, settings, exact_match_before=score(history.before),
                          exact_match_after=score(history.after))
    return summary, zip_or_note(lambda: tuned_zip(kept_by_run(TUNED_MODELS, owner, history.job_id, "model")),
                                summary["notes"])


def download_tuned_file(browser_id: str | None, request: gr.Request = None) -> str:
    """This session's instruction-tuned model as a zip file (model.safetensors, config.json, lab_tokenizer.json).

    Args:
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The zip file; gpt_core.checkpoints.load_checkpoint reads the unzipped folder back.
    """
    tuned = TUNED_MODELS.get(owner_of(browser_id, request), "latest", missing=NO_TUNED_MODEL)
    return tuned_zip(tuned)


def stop_run(history: RunHistory | None, browser_id: str | None, request: gr.Request = None) -> str:
    """Stop this session's instruction-tuning run after its current step.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A line saying whether a run was stopped.
    """
    return RUN.stop(history, browser_id, request)


def score_markdown(before: ExactMatchEvent | None, after: ExactMatchEvent | None) -> str:
    def cell(result: ExactMatchEvent | None) -> str:
        return f"**{result.correct}/{result.total} ({result.score:.0%})**" if result else "…"

    total = (before or after).total if (before or after) else EVAL_RECORDS
    return (f"Exact match on {total} held-out test records (greedy answer == expected output): "
            f"before tuning {cell(before)} · after tuning {cell(after)}")


def _shorten(text: str, limit: int = 80) -> str:
    """A long answer cut for the table: ``_shorten("abcdef", 4) -> 'abc…'``."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_rows(before: ExactMatchEvent | None, after: ExactMatchEvent | None) -> list[list[str]]:
    """The same held-out prompts answered before and after tuning, side by side (✓ marks an exact match)."""
    rows = []
    base = before or after
    if base is None:
        return rows
    for index, row in enumerate(base.rows[:COMPARE_ROWS]):
        answers = []
        for result in (before, after):
            if result is None:
                answers.append("…")
            else:
                got = result.rows[index]
                text = got["answer"].replace("\n", " ↵ ") or "(nothing)"
                answers.append(("✓ " if got["correct"] else "✗ ") + _shorten(text))
        rows.append([row["instruction"], row["input"], row["expected"], *answers])
    return rows


MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def literal(text: str, limit: int = 120) -> str:
    """Model output made safe for Markdown: shown as written, on one line, never as formatting or HTML.

    >>> print(literal("6### Response: *PL* <b>"))
    6\\#\\#\\# Response: \\*PL\\* &lt;b&gt;
    """
    text = _shorten(text.replace("\r", "").replace("\n", " ↵ "), limit)
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False))


def model_label(view: JobView | None) -> str | None:
    """The model a job tunes: its label is "instruct · <model label>"."""
    label = getattr(view, "label", "") or ""
    return label.split(" · ", 1)[1] if " · " in label else None


def result_note(history: RunHistory, choice: str | None) -> str | None:
    """After the run: what the score means for the model that was used."""
    before, after = history.before, history.after
    if after is None:
        return None
    kind = model_kind(choice)
    name = literal(choice or "the model")
    if after.correct == 0:
        if kind == BUNDLED:
            return (f"No exact answer yet from **{name}**. If these are the *copy* or *compute* tasks, that is "
                    "expected (see the data notes); with the *spot a feature* tasks, try more epochs.")
        if kind == RANDOM_INIT:
            return (f"No exact answer yet: **{name}** started from random weights and knows no English. In a "
                    "classroom-size run it learns the answer's *form* first (the loss falls, it writes a short "
                    "answer and stops), long before the answers. The bundled model starts from Shakespeare and "
                    "gets most *spot a feature* answers right in ~150 steps.")
        return (f"No exact answer yet from **{name}**: the loss shows what it learned; exact match asks for the "
                "whole answer, character for character.")
    gained = after.correct - (before.correct if before else 0)
    return (f"**{name}** now answers {after.correct} of {after.total} held-out prompts exactly"
            + (f", {gained} more than before tuning." if gained > 0 else "."))


def run_status(history: RunHistory, view: JobView) -> str:
    lines = [history.status_line(view)]
    if history.samples:
        step, text = history.samples[-1]
        lines.append(f"At step {step} the model answers the first validation prompt with: "
                     f"«{literal(text.strip()) or '(nothing yet)'}»")
    note = result_note(history, model_label(view))
    if note:
        lines.append(note)
    return "\n\n".join(lines)


def run_views(history: RunHistory, view: JobView, owner: str) -> tuple:
    """The loss curves, the exact-match scores and the answers before and after, side by side."""
    return (training_figure(history.step_losses, history.evals, history.max_steps),
            score_markdown(history.before, history.after), compare_rows(history.before, history.after))


def poll_run(history: RunHistory | None, browser_id: str | None, request: gr.Request = None):
    """Follow this session's instruction-tuning run: its status, loss curves, exact-match scores and answers before and after.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The status line, the loss figure, the exact-match scores (Markdown), a table of held-out prompts with their
        answers before and after tuning, and the poll timer (inactive once the run has ended).
    """
    return RUN.poll(history, browser_id, request, run_status, run_views)


reattach = RUN.reattach  # on page load: follow this browser's instruction-tuning run again


def preset_settings(preset: str):
    config = INSTRUCT_PRESETS[preset]
    return gr.update(value=config.epochs), gr.update(value=config.lr), gr.update(value=config.mask_instruction)


def plan_markdown(choice: str | None, marker, preset: str, epochs: float, lr: float, mask_instruction: bool,
                  browser_id: str | None = None, request: gr.Request = None) -> str:
    """What Start will do, before anything runs: the model, the data, the steps and the preset's settings."""
    try:
        records = records_of(owner_of(browser_id, request) if is_stored(marker) else None, marker)
        splits = split_records(records)
        n_train = len(splits["train"])
        config, cap_note = instruct_config(preset, epochs, lr, mask_instruction, n_train)
    except (ValueError, PermissionError) as error:
        return f"**The plan** cannot be made yet: {error}"
    per_epoch = n_train // config.batch_size
    steps = run_steps(config, n_train)
    clip = f", gradient norm clipped at {config.grad_clip:g}" if config.grad_clip else ""
    masked = ("**masked**: only the response's tokens count (the book's exercise 7.2)" if config.mask_instruction
              else "**not masked**: the prompt's tokens count too")
    lines = [
        f"#### What Start does (preset *{preset}*)",
        f"- **Model**: a copy of *{literal(choice or models.DEFAULT_CHOICE)}*",
        f"- **Data**: {n_train:,} training records (of {len(records):,}; {len(splits['val']):,} validation, "
        f"{len(splits['test']):,} test)",
        f"- **Steps**: {config.epochs} epoch{'s' if config.epochs > 1 else ''} × {per_epoch:,} batches of "
        f"{config.batch_size} = **{steps:,} steps**" + (f" (⚠ {cap_note})" if cap_note else ""),
        f"- **Optimizer**: AdamW, learning rate {config.lr:g} (constant), weight decay {config.weight_decay:g}{clip}",
        f"- **Loss**: the instruction is {masked}; validation loss every {config.eval_every} steps",
        f"- **Score**: the first {min(len(splits['test']), EVAL_RECORDS)} test records, answered greedily in at most "
        f"{answer_tokens(config)} tokens before and after tuning; exact match",
        "",
        expect_note(choice or models.DEFAULT_CHOICE),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------

PRESET_LABELS = [
    ("classroom (bundled model, ~1 min)", "classroom"),
    ("the book: GPT-2 medium (pick it at the top; online)", "book-gpt2-medium"),
]
START_NOTE = ("Press **Start fine-tuning**: the run uses a copy of the model chosen at the top (the mask setting "
              "above is used for training).")


def build_tab(model_choice: gr.Dropdown) -> None:
    browser_id = browser_id_state()
    explain(INTRO)
    classroom = INSTRUCT_PRESETS["classroom"]
    # The page opens with its plan drawn: computed once here from the defaults (deterministic, offline), so
    # opening the tab costs the server nothing.
    first_records = default_records()
    first_mask = mask_panel(first_records, 0, classroom.mask_instruction, tokenizer_of(models.DEFAULT_CHOICE))
    first_plan = plan_markdown(models.DEFAULT_CHOICE, None, "classroom", classroom.epochs, classroom.lr,
                               classroom.mask_instruction)
    with gr.Row():
        with gr.Column(scale=2):
            source = gr.Radio(DATA_SOURCES, value=GENERATED, label="instruction data")
            n_records = SliderBox(20, MAX_GENERATED, value=DEFAULT_RECORDS, step=10, label="generated records")
            upload = gr.File(label=f"your JSON file (a list of records, at most {MAX_JSON_BYTES // 1_000_000} MB)",
                             file_types=[".json"], type="filepath", height=130)
            load = gr.Button("Load data")
        with gr.Column(scale=3):
            summary = gr.Markdown(data_summary(first_records, GENERATED), label="the records")
            table = gr.Dataframe(records_table(first_records), headers=["instruction", "input", "output"],
                                 datatype="str", label="the first training records", interactive=False, wrap=True,
                                 max_height=240, column_widths=["45%", "30%", "25%"])

    gr.Markdown("#### One training example and its loss mask")
    with gr.Row():
        mask_toggle = gr.Checkbox(classroom.mask_instruction, label="mask the instruction (learn the response only)")
        record_index = SliderBox(0, first_mask.last_index, value=0, step=1, label="training record")
    mask_note = gr.Markdown(first_mask.note, label="loss-mask note", elem_classes=["lab-note"])
    mask_html = gr.HTML(first_mask.html, label="loss mask", css_template=MASK_CSS, elem_id="instruct-mask")
    with gr.Accordion("the same example as plain text (format_input + format_response)", open=False):
        example_text = gr.Textbox(first_mask.text, label="the record as text", show_label=False, lines=8, interactive=False)

    gr.Markdown("#### Fine-tune")
    with gr.Row():
        preset = gr.Dropdown(PRESET_LABELS, value="classroom", label="preset", scale=3)
        epochs = SliderBox(1, 10, value=classroom.epochs, step=1, label="epochs", scale=2)
        lr = NumberBox(classroom.lr, label="learning rate", minimum=0, scale=1)
        with gr.Column(scale=1):
            start = gr.Button("Start fine-tuning", variant="primary", elem_id="instruct-start")
            stop = gr.Button("Stop")
            download = gr.Button("Download the fine-tuned model", elem_id="instruct-download")
    plan = gr.Markdown(first_plan, label="plan", elem_id="instruct-plan")
    status = gr.Markdown(START_NOTE, label="status", elem_classes=["lab-note"], elem_id="instruct-status")
    with gr.Row():
        loss_plot = gr.Plot(label="loss curves", show_label=False, elem_id="instruct-loss", scale=2)
        with gr.Column(scale=3):
            score = gr.Markdown(score_markdown(None, None), label="exact-match scores", elem_id="instruct-score")
            compare = gr.Dataframe(headers=COMPARE_HEADERS, datatype="str", elem_id="instruct-compare",
                                   label="the same held-out prompts, before and after", interactive=False, wrap=True,
                                   column_widths=["24%", "22%", "14%", "20%", "20%"])
    download_file = gr.File(label=TUNED_ZIP_LABEL, interactive=False, visible=False, height=90,
                            elem_id="instruct-download-file")  # shown once there is a file
    records = gr.State(None)
    history = gr.State(None)
    timer = RunTimer(1.0, active=False)
    show_source(FinetuneRun.train_step, instruction_loss, format_input, instruction_collate, finetune_instruct, answer,
                exact_match_score)

    mask_outputs = [mask_html, mask_note, record_index, example_text]
    data_inputs = [source, n_records, upload, record_index, mask_toggle, browser_id]
    data_outputs = [summary, table, *mask_outputs, records]
    mask_inputs = [records, record_index, mask_toggle, browser_id, model_choice]
    plan_inputs = [model_choice, records, preset, epochs, lr, mask_toggle, browser_id]
    quiet = {"api_name": False, "show_progress": "hidden"}

    def after_load(event):  # a data load: the mask in the picker's tokens, then the plan for the new records
        event.then(friendly(show_mask_of_model), mask_inputs, mask_outputs, **quiet).then(
            friendly(plan_markdown), plan_inputs, plan, **quiet)

    after_load(load.click(tool(preview_data, "instruct_data"), data_inputs, data_outputs, api_name="instruct_data"))
    after_load(upload.upload(lambda: UPLOAD, None, source, api_name=False, queue=False).then(
        friendly(preview_data), data_inputs, data_outputs, api_name=False))
    after_load(n_records.release(lambda kind: kind if kind in GENERATED_SETS else GENERATED, source, source,
                                 api_name=False, queue=False).then(
        friendly(preview_data), data_inputs, data_outputs, api_name=False))
    mask_toggle.change(friendly(show_mask), mask_inputs, mask_outputs, **quiet).then(
        friendly(plan_markdown), plan_inputs, plan, **quiet)
    record_index.release(friendly(show_mask), mask_inputs, mask_outputs, **quiet)
    model_choice.change(friendly(show_mask), mask_inputs, mask_outputs, **quiet).then(
        friendly(plan_markdown), plan_inputs, plan, **quiet)
    preset.change(friendly(preset_settings), preset, [epochs, lr, mask_toggle], api_name=False, queue=False).then(
        friendly(plan_markdown), plan_inputs, plan, **quiet)
    epochs.release(friendly(plan_markdown), plan_inputs, plan, **quiet)
    lr.blur(friendly(plan_markdown), plan_inputs, plan, **quiet)
    start.click(tool(start_run, "instruct_start"), [model_choice, preset, epochs, lr, mask_toggle, records, history, browser_id],
                [status, history, timer], api_name="instruct_start", concurrency_limit=4)
    stop.click(tool(stop_run, "instruct_stop"), [history, browser_id], status, api_name="instruct_stop")
    timer.tick(tool(poll_run, "instruct_poll"), [history, browser_id], [status, loss_plot, score, compare, history, timer],
               api_name="instruct_poll", show_progress="hidden", concurrency_limit=None)
    # For scripts and agents: the loss-mask view, and one call that starts a run, waits and returns its summary.
    api_only = gr.Button(visible=False)
    mask_data = gr.JSON(label="loss mask counts", visible=False)
    api_only.click(tool(instruct_loss_mask, "instruct_loss_mask"),
                   [source, n_records, upload, record_index, mask_toggle, model_choice], [mask_html, mask_note, mask_data],
                   api_name="instruct_loss_mask", concurrency_limit=4, concurrency_id="instruct_mask")
    download.click(tool(download_tuned_file, "instruct_download"), browser_id, download_file,
                   api_name="instruct_download", concurrency_limit=2).success(
        lambda: gr.File(visible=True), None, download_file, api_name=False, queue=False)
    run_summary_json = gr.JSON(label="run summary", visible=False)
    run_zip = gr.File(label=TUNED_ZIP_LABEL, visible=False)
    api_only.click(tool(instruct_run, "instruct_run"),
                   [model_choice, preset, epochs, lr, mask_toggle, source, n_records, upload],
                   [run_summary_json, run_zip],
                   api_name="instruct_run", concurrency_limit=sync_run_limit(), concurrency_id=SYNC_RUN_QUEUE)
    root = gr.context.Context.root_block
    root.load(friendly(reattach), browser_id, [history, timer], api_name=False)
