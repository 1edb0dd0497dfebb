"""LLM Lab: watch a GPT-2-style language model being built from its own code.

Run `python app.py` and open the address it prints. Each tab is one stage of the book
"Build a Large Language Model (From Scratch)"; the engine behind every view is in gpt_core/.
"""

from __future__ import annotations

import logging
import os
import sys

import gradio as gr
import torch

from ui import (
    attention_tab,
    classify_tab,
    decode_worker,
    generate_tab,
    inside_tab,
    instruct_tab,
    models,
    pretrain_tab,
    runs,
    tokenizer_tab,
)

TITLE = "LLM Lab"

INTRO = """
# LLM Lab
Watch a GPT-2-style language model being built from its own code: tokens, attention, the model, generation.
Every view runs the engine in `gpt_core/`; open **the gpt_core code this tab runs** under each view to read it.
"""

CSS = """
.lab-explain { font-size: 0.95rem; }
.lab-tokens { line-height: 2.1; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap;
              word-break: break-word; max-height: 420px; overflow-y: auto; padding: 8px; }
.lab-tokens span.tok { border-radius: 4px; padding: 1px 0; margin: 0 1px; color: #111; }
.lab-note { color: #555; font-size: 0.9rem; }
"""


# Gradio's file cache (uploads, checkpoint zips handed out): every 10 minutes, files older than an hour go.
CACHE_CLEANING = (600, 3600)


def build_demo() -> gr.Blocks:
    """Assemble the tabs into one Blocks app (without launching it)."""
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANING) as demo:
        gr.Markdown(INTRO)
        runs.browser_id_state()  # top level, so a refreshed page finds its runs again (see ui/runs.py)
        model_choice = models.model_picker()  # shared by every tab that runs a model
        with gr.Tabs():
            with gr.Tab("Tokenizer", id="tokenizer"):
                tokenizer_tab.build_tab()
            with gr.Tab("Attention", id="attention"):
                attention_tab.build_tab()
            with gr.Tab("Inside GPT", id="inside"):
                inside_tab.build_tab(model_choice)
            with gr.Tab("Generate", id="generate"):
                generate_tab.build_tab(model_choice)
            with gr.Tab("Pretrain", id="pretrain"):
                pretrain_tab.build_tab(model_choice)
            with gr.Tab("Classify", id="classify"):
                classify_tab.build_tab(model_choice)
            with gr.Tab("Instruct", id="instruct"):
                instruct_tab.build_tab(model_choice)
    return demo


# Uploads (a text to train on, instruction JSON) larger than this are refused by the server before they are stored.
MAX_UPLOAD = "10mb"


def launch_options() -> dict:
    """Arguments for `demo.launch()`: Gradio 6 takes the theme and CSS here, and the server's bounds:
    upload size, and how many sessions' state it keeps (LLM_LAB_SESSIONS, oldest dropped first)."""
    sessions = int(os.environ.get("LLM_LAB_SESSIONS", "300"))
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": MAX_UPLOAD,
            "state_session_capacity": sessions}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One torch thread per request on a small server: thirty students' requests already fill the cores, and
    # two threads per request on two busy cores cost 2-6x the CPU (see bench/classroom.py).
    torch.set_num_threads(runs.run_threads())
    # Tiny numbers (denormals) take x86 CPUs many cycles each; a trained small model's activations have them, and
    # flushing them to zero made the bundled model generate 22% faster (a GPU's fast paths do the same).
    torch.set_flush_denormal(True)
    # A thread that waits for the interpreter lock after each small torch call waits up to this long: 1 ms
    # instead of Python's 5 ms lowered /generate's p95 under 30 students (bench/classroom.py).
    sys.setswitchinterval(0.001)
    decode_worker.start(models.built_in_labels())  # generation for the built-in models in a second process
    demo = build_demo()
    demo.queue(default_concurrency_limit=int(os.environ.get("LLM_LAB_CONCURRENCY", "4")))
    demo.launch(**launch_options())


if __name__ == "__main__":
    main()
