"""A teacher's first minutes: every tab is drawn when it opens (no button pressed), a link opens a tab, the keys
work (Enter submits, arrow keys move the sliders), and typing a short text pops no error from another section."""

from __future__ import annotations

import time
from contextlib import contextmanager
from types import SimpleNamespace

import gradio as gr
import pytest

import app

OPEN_WITHIN_MS = 8_000  # a tab's view must be there this soon after the tab is opened

# What each tab shows once drawn: CSS selectors that must all be on the page.
DRAWN = {
    "Tokenizer": ["#tok-spans span.tok", "#tok-windows table", "#tok-embeddings .js-plotly-plot"],
    "Inside GPT": ["#inside-grid .js-plotly-plot", "#inside-head .js-plotly-plot"],
    "Generate": ["#generate-text span.tok", "#generate-candidates .js-plotly-plot"],
    "Attention": ["#attention-rung-1 .js-plotly-plot", "#attention-rung-4 .js-plotly-plot"],
    "Pretrain": ["#pretrain-plot .js-plotly-plot", "#pretrain-batch-view span.tok"],
    "Classify": ["#classify-loss .js-plotly-plot", "#classify-accuracy .js-plotly-plot"],
    "Instruct": ["#instruct-mask .cell", "#instruct-plan h4"],
}


# ---------------------------------------------------------------- deep links (no browser)
def link(query: dict | None):
    request = None if query is None else SimpleNamespace(query_params=query)
    return app.tab_from_link(request)


@pytest.mark.parametrize("tab", app.TAB_IDS)
def test_a_link_names_the_tab_to_open(tab):
    update = link({"tab": tab})
    assert isinstance(update, gr.Tabs) and update.selected == tab


def test_a_link_is_read_whatever_its_case_and_spaces():
    assert link({"tab": " Generate "}).selected == "generate"


@pytest.mark.parametrize("query", [{}, {"tab": "nope"}, {"tab": ""}, {"__theme": "dark"}, None])
def test_no_or_an_unknown_tab_leaves_the_page_as_it_is(query):
    assert link(query) == gr.skip()


def test_the_tabs_have_the_ids_the_links_use():
    demo = app.build_demo()
    tabs = [block for block in demo.blocks.values() if isinstance(block, gr.Tab)]
    assert [tab.id for tab in tabs] == list(app.TAB_IDS)
    assert any(isinstance(block, gr.Tabs) and block.elem_id == "lab-tabs" for block in demo.blocks.values())


# ---------------------------------------------------------------- in a browser
@contextmanager
def new_page(browser, url: str):
    """A fresh 1400 x 1000 page (the projected size) with the lab loaded, closed afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("text=LLM Lab", timeout=30_000)
        yield page
    finally:
        context.close()


@pytest.mark.browser
def test_every_tab_is_drawn_when_it_opens_with_no_button_pressed(browser, app_url):
    with new_page(browser, app_url) as page:
        for tab, selectors in DRAWN.items():
            page.get_by_role("tab", name=tab, exact=True).click()
            opened = time.perf_counter()
            for selector in selectors:
                left = OPEN_WITHIN_MS - 1000 * (time.perf_counter() - opened)
                page.wait_for_selector(selector, timeout=max(left, 1), state="visible")
            print(f"{tab}: drawn {1000 * (time.perf_counter() - opened):.0f} ms after opening")
        assert page.locator(".toast-body").count() == 0


@pytest.mark.browser
def test_a_link_opens_its_tab(browser, app_url):
    with new_page(browser, f"{app_url}?tab=generate") as page:
        page.wait_for_selector('#lab-tabs [role="tab"][aria-selected="true"]:has-text("Generate")', timeout=15_000)
        page.wait_for_selector("#generate-candidates .js-plotly-plot", timeout=OPEN_WITHIN_MS)


@pytest.mark.browser
def test_enter_generates_and_arrow_keys_move_the_enlarged_head(browser, app_url):
    with new_page(browser, f"{app_url}?tab=inside") as page:
        page.wait_for_selector("#inside-head text:has-text('layer 3, head 0')", timeout=30_000)
        page.locator("#inside-layer input[type=range]").focus()
        page.keyboard.press("ArrowLeft")  # the keys send no `release`: the tab listens to `input` too
        page.wait_for_selector("#inside-head text:has-text('layer 2, head 0')", timeout=20_000)

        page.get_by_role("tab", name="Generate", exact=True).click()
        prompt = page.locator("#generate-prompt textarea, #generate-prompt input").first
        prompt.fill("To be, or not to be")
        prompt.press("Enter")
        page.wait_for_selector("#generate-status:has-text('Generated 30 tokens')", timeout=60_000)
        assert "To be, or not to be" in page.locator("#generate-text").inner_text()
        assert page.locator(".toast-body").count() == 0
