"""LLM Lab: watch a GPT-2-style language model being built from its own code.

Run `python app.py` and open the address it prints. Each tab is one stage of the book
"Build a Large Language Model (From Scratch)"; the engine behind every view is in gpt_core/.
"""

from __future__ import annotations

import logging
import os

import gradio as gr

from ui import (
    attention_tab,
    classify_tab,
    classroom,
    decode_worker,
    generate_tab,
    inside_tab,
    instruct_tab,
    models,
    pretrain_tab,
    runs,
    sessions,
    tokenizer_tab,
)

TITLE = "LLM Lab"

INTRO = """
<label id="lab-projector-toggle" title="Bigger text, token ids and plot labels for a projected screen; remembered by \
this browser (or add ?projector=1 to the address)"><input type="checkbox"> Projector mode: large text</label>

# LLM Lab
Watch a GPT-2-style language model being built from its own code: tokens, attention, the model, generation.
Every view runs the engine in `gpt_core/`; open **the gpt_core code this tab runs** under each view to read it.
"""

CSS = """
/* ---- Readable colours in both themes (WCAG: text at least 4.5:1 on its background) ---------------------------
   Gradio's own "subdued" grey (#9ca3af, used for info lines, placeholders, slider ends) is 2.5:1 on white, and
   the Soft theme's indigo-500 labels, selected tab and white-on-indigo buttons are 3.6 to 4.5:1: one shade
   darker (indigo-600/700) in the light theme, one lighter (indigo-400) for accent text in the dark one. */
:root {
  --block-label-text-color: var(--primary-700);
  --block-title-text-color: var(--primary-700);
  --button-primary-background-fill: var(--primary-600);
  --button-primary-background-fill-hover: var(--primary-700);
  --checkbox-label-background-fill-selected: var(--primary-600);
  --color-accent: var(--primary-600);
  --lab-note-color: #4b5563;
  --lab-code-size: 15px;
  --lab-id-size: 0.7em;
  --body-text-color-subdued: #5b6472;
  --block-info-text-color: #4b5563;
  --block-info-text-size: var(--text-md);
}
:root .dark {
  --color-accent: var(--primary-400);
  --lab-note-color: #d1d5db;
  --body-text-color-subdued: #b6bcc6;
  --block-info-text-color: #d1d5db;
  --block-info-text-size: var(--text-md);
}

/* ---- Projector mode: <html class="lab-projector"> (checkbox at the top, ?projector=1; see ui/common.PAGE_JS) -- */
:root.lab-projector, :root.lab-projector .dark {
  --text-xxs: 12px; --text-xs: 14px; --text-sm: 16px; --text-md: 18px; --text-lg: 20px; --text-xl: 26px;
  --text-xxl: 30px; --lab-code-size: 17px; --lab-id-size: 0.85em;
}
.lab-projector .prose, .lab-projector .prose p, .lab-projector .prose li { font-size: var(--text-md); }
.lab-projector .prose code, .lab-projector .lab-tokens, .lab-projector table { font-size: 17px !important; }

#lab-projector-toggle { float: right; display: inline-flex; align-items: center; gap: 8px; margin-top: 4px;
  padding: 4px 12px; border: 1px solid var(--border-color-primary); border-radius: 8px; cursor: pointer;
  font-size: var(--text-md); color: var(--body-text-color); background: var(--block-background-fill); }
#lab-projector-toggle input { appearance: auto !important; background: none !important; width: 18px; height: 18px;
  margin: 0; cursor: pointer; accent-color: var(--color-accent); }

/* ---- Explanations and notes --------------------------------------------------------------------------------- */
.lab-explain, .lab-explain p { font-size: var(--text-md); }
.lab-note, .lab-note * { color: var(--lab-note-color) !important; font-size: var(--text-md) !important; }

/* ---- Tokens: pastel chips that stay light in the dark theme, with dark text; the id printed under each ----- */
.lab-tokens { line-height: 2.1; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap;
              word-break: break-word; max-height: 420px; overflow-y: auto; padding: 8px; font-size: var(--text-md); }
.lab-tokens span.tok { border-radius: 4px; padding: 1px 0; margin: 0 1px; color: #111827; }
span.tok[data-id] { display: inline-block; vertical-align: top; text-align: center; line-height: 1.3;
                    margin: 0 1px 4px; color: #111827; }
span.tok[data-id]::after { content: attr(data-id); display: block; font-size: var(--lab-id-size); line-height: 1.2;
                           color: #374151; font-weight: 400; }
/* The tokenizer's tables (their own CSS is light-only): captions, step numbers, rules and the current step. */
#tok-replay td.step-no, #tok-windows table.lab-window caption { color: var(--lab-note-color) !important; }
#tok-merges caption, #tok-merges th, #tok-windows th { color: var(--body-text-color) !important; }
.dark #tok-replay th, .dark #tok-replay td, .dark #tok-merges th, .dark #tok-merges td, .dark #tok-windows th,
.dark #tok-windows td:not(.tok) { border-bottom-color: var(--border-color-primary) !important; }
.dark #tok-replay tr.current { background: var(--neutral-700) !important; }

/* ---- Code panels (ui/common.show_source): 15 px (17 px on a projector), 1.5 line height, and up to
   CODE_LINES + 1 = 45 lines before the panel scrolls (Gradio measures its line height while the panel is closed). */
.lab-code .cm-editor .cm-content, .lab-code .cm-editor .cm-gutters {
  font-size: var(--lab-code-size) !important; line-height: 1.5 !important; }
.lab-code .cm-scroller { max-height: calc(var(--lab-code-size) * 1.5 * 45 + 8px) !important; }

/* ---- Plotly figures follow the theme: axis labels in the page's text colour (a figure's own grey can be under
   4.5:1); in the dark theme no white paper, light titles, legends and annotations, and a faint grid ------------ */
.js-plotly-plot [class*="axislayer"] text, .js-plotly-plot .infolayer [class*="title"] {
  fill: var(--body-text-color) !important; }
.dark .js-plotly-plot .main-svg { background: transparent !important; }
.dark .js-plotly-plot .bglayer rect.bg, .dark .js-plotly-plot .legend rect.bg { fill: transparent !important; }
.dark .js-plotly-plot .infolayer text { fill: var(--body-text-color) !important; }
.dark .js-plotly-plot .gridlayer path, .dark .js-plotly-plot .zerolinelayer path {
  stroke: rgba(255, 255, 255, 0.14) !important; }
.dark .js-plotly-plot text.bartext-outside { fill: var(--body-text-color) !important; }
.lab-hidden { display: none !important; }  /* parts a page script uses (class mode's code box and update button) */
/* ---- Class mode: the join code big enough for the back of the room, the QR code beside it ---------------- */
.lab-class-join { display: flex; gap: 32px; align-items: center; flex-wrap: wrap; }
.lab-class-code { font-size: 72px; font-weight: 800; letter-spacing: 0.18em; line-height: 1.1;
  font-family: ui-monospace, monospace; }
.lab-class-link { font-size: 22px; font-weight: 600; word-break: break-all; margin-bottom: 12px; }
.lab-class-label { font-size: 14px; color: var(--lab-note-color); text-transform: uppercase; }
.lab-class-qr svg { width: 220px; height: 220px; background: #fff; padding: 8px; border-radius: 6px; }
ul.lab-class-roster { columns: 4 12em; list-style: none; padding-left: 0; margin: 0; }
ul.lab-class-roster li.away { opacity: 0.55; }
table.lab-class-board { border-collapse: collapse; }
table.lab-class-board th, table.lab-class-board td { padding: 4px 10px; border-bottom: 1px solid var(--border-color-primary); text-align: left; }
/* A label inside a mid-tone bar in plotly's default #444 is under 3:1; near-black reads at 4.5:1 or more. */
.js-plotly-plot text.bartext-inside[style*="fill: rgb(68, 68, 68)"] { fill: #111827 !important; }
"""


# Gradio's file cache (uploads, checkpoint zips handed out): every 10 minutes, files older than an hour go.
CACHE_CLEANING = (600, 3600)


TAB_IDS = ("tokenizer", "attention", "inside", "generate", "pretrain", "classify", "instruct")


def tab_from_link(request: gr.Request):
    """A deep link: `?tab=generate` opens the Generate tab (ids: TAB_IDS); no or an unknown id leaves the first."""
    tab = (request.query_params.get("tab") or "").strip().lower() if request is not None else ""
    return gr.Tabs(selected=tab) if tab in TAB_IDS else gr.skip()


def build_demo() -> gr.Blocks:
    """Assemble the tabs into one Blocks app (without launching it)."""
    sessions.light_sessions()  # a new browser session no longer builds all 420 blocks' configs (ui/sessions.py)
    sessions.light_queue()  # nor does every event rebuild the queue's monitoring summary
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANING) as demo:
        gr.Markdown(INTRO)
        runs.browser_id_state()  # top level, so a refreshed page finds its runs again (see ui/runs.py)
        model_choice = models.model_picker()  # shared by every tab that runs a model
        browser_id = runs.browser_id_state()
        class_panel = classroom.build_panel()  # class mode: lead a class, or join one
        with gr.Tabs(elem_id="lab-tabs") as tabs:
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
        demo.load(tab_from_link, None, tabs, api_name=False, queue=False)  # ?tab=<id> opens that tab
        classroom.wire(class_panel, tabs, TAB_IDS, model_choice, browser_id)
    return demo


# Uploads (a text to train on, instruction JSON) larger than this are refused by the server before they are stored.
MAX_UPLOAD = "10mb"


def launch_options() -> dict:
    """Arguments for `demo.launch()`: Gradio 6 takes the theme, CSS and head script here, and the server's bounds:
    upload size, how many sessions' state it keeps (LLM_LAB_SESSIONS, oldest dropped first), and the MCP server
    (LLM_LAB_MCP=1 or GRADIO_MCP_SERVER=True)."""
    from ui.common import page_head  # the page script: projector mode, readable code colours

    sessions = int(os.environ.get("LLM_LAB_SESSIONS", "300"))
    return {"theme": gr.themes.Soft(), "css": CSS, "head": page_head(), "max_file_size": MAX_UPLOAD,
            "state_session_capacity": sessions, "mcp_server": mcp_server()}


def queue_options() -> dict:
    """Arguments for `demo.queue()`: events served at once (LLM_LAB_CONCURRENCY) and events waiting at most
    (LLM_LAB_QUEUE_SIZE; more are refused with "the queue is full"). A stated size also keeps a ZeroGPU Space's
    Gradio from setting it to 1 (one waiting event for the whole app).

    >>> queue_options()
    {'default_concurrency_limit': 4, 'max_size': 256}
    """
    return {"default_concurrency_limit": int(os.environ.get("LLM_LAB_CONCURRENCY", "4")),
            "max_size": int(os.environ.get("LLM_LAB_QUEUE_SIZE", "256"))}


def mcp_server() -> bool | None:
    """The MCP server's setting: LLM_LAB_MCP=1 turns it on (tools at /gradio_api/mcp, needs `gradio[mcp]`);
    without it, None leaves Gradio's own GRADIO_MCP_SERVER=True (or off) to decide."""
    value = os.environ.get("LLM_LAB_MCP", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runs.serve_settings()
    decode_worker.start(models.built_in_labels())  # generation for the built-in models in a second process
    demo = build_demo()
    demo.queue(**queue_options())
    demo.launch(prevent_thread_lock=True, **launch_options())
    classroom.add_routes(demo.app)  # GET /class_version/CODE?after=V: what a following page waits on
    logging.getLogger(__name__).info("%d start-up objects frozen out of the garbage collector's full collections",
                                     sessions.steady_gc())
    demo.block_thread()


if __name__ == "__main__":
    main()
