"""The pretraining command line (gpt_core.train_cli): help, usage errors, the tab's defaults, saving, resuming.

Runs are tiny (one block 32 wide, byte tokens, 16-token windows, batches of 2) and call ``main(argv)`` in-process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_core import train_cli
from gpt_core.events import StepEvent
from gpt_core.files import write_text_atomically
from gpt_core.model import GPTModel

TEXT = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. " * 40  # 3,200 characters
TINY = ["--tokenizer", "bytes", "--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context-length", "16",
        "--batch-size", "2", "--warmup", "1", "--eval-every", "0", "--sample-every", "0", "--device", "cpu",
        "--autocast", "off"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT)
    return path


def run(corpus: Path, *options: str) -> int:
    return train_cli.main(["--corpus", str(corpus), *TINY, *options])


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def usage_error(capsys, argv: list[str]) -> str:
    """main(argv) must stop with exit status 2 and a usage line; returns stderr."""
    with pytest.raises(SystemExit) as stopped:
        train_cli.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith("usage: python -m gpt_core.train ") and "Traceback" not in err
    return err


# ---------------------------------------------------------------- help and usage errors
def test_help_shows_the_default_of_every_option(capsys):
    parser = train_cli.build_parser()
    with pytest.raises(SystemExit) as stopped:
        train_cli.main(["--help"])
    assert stopped.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # one line: the help wraps at the terminal width
    options = [a for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"]
    assert len(options) == 46
    for option, following in zip(options, options[1:] + [None]):
        start = help_text.index(f" {option.option_strings[0]} ", help_text.index("options:"))
        end = help_text.index(f" {following.option_strings[0]} ", start) if following else len(help_text)
        assert "(default:" in help_text[start:end], option.option_strings[0]
    for shown in ("--tokenizer {gpt2,bytes,bpe:N,FILE} gpt2:", "(default: bpe:4096)", "(default: 0.01)",
                  "--preset {book,gpt2-small,gpt2-medium,gpt2-large,gpt2-xl,nano,micro,mini}",
                  "(default: a tenth of --max-steps)", "--schedule {cosine,constant}", "(default: (0.9, 0.99))"):
        assert shown in help_text


@pytest.mark.parametrize("argv, message", [
    (["--preset", "bogus"], "argument --preset: invalid choice: 'bogus' (choose from 'book', 'gpt2-small',"),
    (["--lr", "nan"], "argument --lr: must be a number above 0 and at most 10, got 'nan'"),
    (["--lr=-1e-3"], "argument --lr: must be a number above 0 and at most 10, got '-1e-3'"),
    (["--grad-clip", "inf"], "argument --grad-clip: must be a number from 0 and at most 1e+06, got 'inf'"),
    (["--drop-rate", "1"], "argument --drop-rate: must be a number from 0 and below 1, got '1'"),
    (["--batch-size", "0"], "argument --batch-size: must be from 1 to 65,536, got 0"),
    (["--max-steps", "2.5"], "argument --max-steps: expected a whole number, got '2.5'"),
    (["--corpus", "no-such-file.txt"], "argument --corpus: expected shakespeare, verdict or the path of a text file"),
    (["--tokenizer", "bpe:12"], "argument --tokenizer: expected gpt2, bytes, bpe:N (N from 257 to 16,384)"),
    (["--device", "gpu"], "argument --device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--qkv-bias", "maybe"], "argument --qkv-bias: expected yes or no, got 'maybe'"),
    (["--autocast", "fp8"], "argument --autocast: invalid choice: 'fp8'"),
    (["--no-save", "--out", "x"], "--no-save and --out contradict each other"),
    (["--force"], "--force only matters with --resume"),
])
def test_a_bad_option_is_a_usage_error(capsys, argv, message):
    assert f"python -m gpt_core.train: error: {message}" in usage_error(capsys, argv)


def test_what_only_the_text_or_the_model_can_tell_is_a_usage_error_too(capsys, corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--emb-dim", "30", "--n-heads", "4"])
    assert err.endswith("error: emb_dim (30) must be divisible by n_heads (4) so that every head gets the same "
                        "width.\n")
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--max-chars", "99"])
    assert err.endswith("error: The text has only 99 characters; a model needs thousands to learn anything.\n")
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes([0xFF, 0xFE, 0x00]) * 100)
    assert usage_error(capsys, ["--corpus", str(binary)]).endswith(f"error: {binary} is not UTF-8 text.\n")
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--context-length", "1000"])
    assert err.endswith("error: The validation text is too short: A context length of 1000 needs at least 1001 "
                        "tokens, has 320. Use a longer text or a shorter context.\n")  # the last 10% of 3,200 bytes
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--batch-size", "500"])
    assert "error: The training data has 179 sequences, fewer than one batch of 500." in err
    assert folder_names(tmp_path) == ["tiny.txt", "weights.bin"]  # no run folder left behind (nor runs/)


def test_a_bad_preset_from_the_shell_exits_2_with_the_usage_line():
    done = subprocess.run([sys.executable, "-m", "gpt_core.train", "--preset", "bogus"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m gpt_core.train [--preset NAME]")
    assert "error: argument --preset: invalid choice: 'bogus'" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- defaults: the Pretrain tab's run
def test_the_defaults_are_the_pretrain_tabs_run():
    pretrain_tab = pytest.importorskip("ui.pretrain_tab")
    args = train_cli.parse_args([])
    tab = pretrain_tab
    assert (args.preset, args.corpus, args.tokenizer) == (tab.CLASSROOM_PRESET, "shakespeare",
                                                          tab.TOKENIZER_SPECS[tab.BPE_4096])
    assert (args.max_steps, args.batch_size, args.context_length, args.lr, args.warmup) == (
        tab.CLASSROOM_STEPS, tab.CLASSROOM_BATCH, tab.CLASSROOM_CONTEXT, tab.CLASSROOM_LR, tab.CLASSROOM_WARMUP)
    assert (args.betas, args.seed, args.eval_batches) == (tab.BETAS, tab.SEED, tab.EVAL_BATCHES)
    assert (args.split, train_cli.parse_args(["--recipe", "book-ch5"]).split) == ("tokens", "characters")
    assert (args.eval_every, args.sample_every, args.checkpoint_every) == (100, 125, 250)  # as the tab's config
    cfg = train_cli.model_config(args, 4096)
    assert cfg == tab.model_config("nano", 4096, tab.CLASSROOM_CONTEXT)
    assert GPTModel(cfg).num_parameters() == 1_448_704  # was 6,846,080 with GPT-2's vocabulary
    assert args.warmup == 300 and train_cli.parse_args(["--max-steps", "50"]).warmup == 50  # never past the end


# ---------------------------------------------------------------- saving
def test_without_out_the_run_is_saved_in_a_new_folder_under_runs(tmp_path, monkeypatch, capsys, corpus):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_cli.time, "strftime", lambda pattern: "20250101-120000")
    assert run(corpus, "--max-steps", "2") == 0
    folder = Path("runs/nano-tiny-20250101-120000")
    assert folder_names(folder) == ["latest.txt", "run_settings.json", "step-000002"]
    printed = capsys.readouterr().out
    assert f"saving to {folder}\n" in printed
    assert f"model saved in {folder}/step-000002\n  continue: python -m gpt_core.train --resume {folder}" in printed
    settings = json.loads((folder / "run_settings.json").read_text())
    assert (settings["batch_size"], settings["context_length"], settings["seed"]) == (2, 16, 123)
    assert settings["text"] == str(corpus) and len(settings["text_sha256"]) == 64
    assert train_cli.new_run_folder("nano", "tiny.txt") == Path("runs/nano-tiny-20250101-120000-2")  # never reused
    assert train_cli.new_run_folder("nano", "shakespeare") == Path("runs/nano-shakespeare-20250101-120000")
    assert train_cli.new_run_folder("mini", "my text (v2).txt") == Path("runs/mini-my-text-v2-20250101-120000")


def test_no_save_writes_nothing(tmp_path, monkeypatch, capsys, corpus):
    monkeypatch.chdir(tmp_path)
    assert run(corpus, "--max-steps", "1", "--no-save") == 0
    assert folder_names(tmp_path) == ["tiny.txt"]
    assert capsys.readouterr().out.endswith("nothing was saved (--no-save)\n")


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "latest.txt", "step-000002\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "latest.txt").stat().st_mode & 0o777 == 0o644  # mkstemp's were 0o600
    assert folder_names(tmp_path) == ["latest.txt"]


# ---------------------------------------------------------------- resuming
def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one(tmp_path, capsys, corpus):
    out = tmp_path / "run"
    assert run(corpus, "--max-steps", "4", "--checkpoint-every", "2", "--out", str(out)) == 0
    assert folder_names(out) == ["latest.txt", "run_settings.json", "step-000002", "step-000004"]
    weights = out / "step-000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a copy cut short: the last 25 weights are missing
    (out / ".latest.txt.d3ad.tmp").write_text("step-0000")  # what runs killed mid-write leave behind
    (out / ".tmp-step-000006").mkdir()
    (out / "step-000002" / ".model.safetensors.beef.tmp").write_bytes(b"\0")
    capsys.readouterr()

    assert train_cli.main(["--resume", str(out), "--max-steps", "6"]) == 0  # with the run's own options
    printed = capsys.readouterr()
    assert printed.err.startswith(
        "warning: step-000004 is damaged (model.safetensors is unreadable: Error while deserializing header: "
        "incomplete metadata, file not fully covered); resuming from step-000002\n"
        "warning: set aside the damaged step-000004 as step-000004.damaged\n")
    assert f"saving to {out}\n" in printed.out  # the resumed run's own folder
    assert "resuming at step 2" in printed.out
    assert re.findall(r"checkpoint: \S+/(step-\d+)", printed.out) == ["step-000004", "step-000006"]
    assert folder_names(out) == ["latest.txt", "run_settings.json", "step-000004", "step-000004.damaged",
                                 "step-000006"]  # kept: the two newest intact ones; no temporary file left
    assert folder_names(out / "step-000004") == ["config.json", "model.safetensors", "train_state.json",
                                                 "train_state.safetensors"]
    assert json.loads((out / "step-000006" / "train_state.json").read_text())["step"] == 6
    assert (out / "latest.txt").read_text() == "step-000006\n"


def test_no_intact_checkpoint_is_a_clear_error(tmp_path, capsys, corpus):
    out = tmp_path / "run"
    assert run(corpus, "--max-steps", "4", "--checkpoint-every", "2", "--out", str(out)) == 0
    (out / "step-000004" / "train_state.json").write_text('{"format": "llm-lab-train-st')
    (out / "step-000002" / "config.json").unlink()
    capsys.readouterr()
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--max-steps", "6", "--resume", str(out)])
    assert err.endswith(f"error: No intact checkpoint in {out} to resume from: step-000004 is damaged "
                        f"(train_state.json is unreadable: Unterminated string starting at: line 1 column 12 "
                        f"(char 11)); step-000002 is damaged (config.json is missing).\n")
    err = usage_error(capsys, ["--corpus", str(corpus), *TINY, "--resume", str(out / "step-000004")])
    assert f"error: The checkpoint {out / 'step-000004'} is damaged (train_state.json is unreadable" in err
    assert f"error: There is no folder {tmp_path / 'nowhere'} to resume from." in usage_error(
        capsys, ["--corpus", str(corpus), *TINY, "--resume", str(tmp_path / "nowhere")])


def test_a_resume_with_other_settings_is_refused_unless_forced(tmp_path, capsys, corpus):
    out = tmp_path / "run"
    assert run(corpus, "--max-steps", "2", "--out", str(out)) == 0
    other_text = tmp_path / "other.txt"
    other_text.write_text(TEXT.upper())
    capsys.readouterr()
    err = usage_error(capsys, ["--corpus", str(other_text), *TINY, "--max-steps", "4", "--resume", str(out),
                               "--batch-size", "3", "--seed", "7"])
    assert err.endswith(f"error: {out}/step-000002 was trained with other settings: batch size 2 (now 3); seed 123 "
                        f"(now 7); text {corpus} (now {other_text}). A resumed run must keep them to continue the "
                        f"same run: use the same ones, or add --force.\n")
    corpus.write_text(TEXT + "An edit.")  # the same file name, another text
    assert f"text {corpus} (now {corpus}, whose content changed)" in usage_error(
        capsys, ["--corpus", str(corpus), *TINY, "--max-steps", "4", "--resume", str(out)])
    corpus.write_text(TEXT)
    assert "is at step 2 already: give a --max-steps above it" in usage_error(
        capsys, ["--corpus", str(corpus), *TINY, "--max-steps", "2", "--resume", str(out)])

    assert run(corpus, "--max-steps", "4", "--resume", str(out), "--batch-size", "3", "--force") == 0
    printed = capsys.readouterr()
    assert printed.err.startswith("warning: resuming with other settings (--force): batch size 2 (now 3)\n")
    assert "48 tokens per step, resuming at step 2" in printed.out  # 3 sequences of 16 tokens
    state = json.loads((out / "step-000004" / "train_state.json").read_text())
    assert (state["step"], state["config"]["batch_size"]) == (4, 3)
    assert json.loads((out / "run_settings.json").read_text())["batch_size"] == 3  # the next resume compares to 3


# ---------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_after_the_step_and_saves_twice_quits_at_once(tmp_path, capsys, corpus, monkeypatch, presses):
    train = train_cli.train

    def train_pressing_ctrl_c(*args):
        for event in train(*args):
            yield event
            if isinstance(event, StepEvent) and event.step == 3:
                for _ in range(presses):
                    signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(train_cli, "train", train_pressing_ctrl_c)
    out = tmp_path / "run"
    assert run(corpus, "--max-steps", "1000", "--out", str(out)) == 130
    printed = capsys.readouterr()
    assert "stopping after this step, then saving (Ctrl-C again to quit now)" in printed.err
    if presses == 1:
        assert "done (stopped): Stopped at step 3, as asked.\nmodel saved in" in printed.out
        assert folder_names(out) == ["latest.txt", "run_settings.json", "step-000003"]
    else:
        assert "interrupted (Ctrl-C) at step 3" in printed.err and printed.out.endswith("nothing was saved\n")
        assert folder_names(out) == ["run_settings.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest's own Ctrl-C is back
