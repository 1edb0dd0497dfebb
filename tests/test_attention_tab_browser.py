"""The Attention tab in headless Chromium, as a teacher meets it: drawn on opening with the book's numbers in the
cells, readable sizes, no clipped or overlapping labels at 1400 px, transparent plots in the dark theme, and every
control (Enter, an example, a slider's arrow keys, a checkbox) redrawing the ladder."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

RUNGS = [f"#attention-rung-{rung}" for rung in range(1, 5)]

# For one plot: its size, the font sizes of its titles and of the numbers in its cells, and every upright label
# (row labels, titles, upright column labels) that leaves the plot or overlaps another.
LAYOUT_JS = r"""
(selector) => {
  const plot = document.querySelector(selector + " .js-plotly-plot");
  const svg = plot.querySelector(".main-svg");  // the paper; a second svg on top holds the titles
  const box = svg.getBoundingClientRect();
  const rect = (e) => e.getBoundingClientRect();
  const upright = [...plot.querySelectorAll(".ytick text, .annotation-text, .xtick text")]
    .filter(e => !(e.getAttribute("transform") || "").includes("rotate"))
    .filter(e => rect(e).width > 0);
  const outside = upright.filter(e => { const r = rect(e);
    return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1; })
    .map(e => e.textContent);
  const overlapping = [];
  for (let i = 0; i < upright.length; i++) for (let j = i + 1; j < upright.length; j++) {
    const a = rect(upright[i]), b = rect(upright[j]);
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
      overlapping.push(upright[i].textContent + " / " + upright[j].textContent);
  }
  const numbers = [...plot.querySelectorAll("text")].filter(e => /^-?\d+\.\d+$/.test(e.textContent.trim()));
  const titles = [...plot.querySelectorAll(".annotation-text")];
  const size = (e) => parseFloat(getComputedStyle(e).fontSize);
  return {width: box.width, height: box.height, outside, overlapping,
          numberSizes: numbers.map(size), titleSizes: titles.map(size),
          backgrounds: [...plot.querySelectorAll(".bglayer rect.bg")].map(e => getComputedStyle(e).fill),
          paper: getComputedStyle(svg).backgroundColor};
}
"""


def open_tab(page):
    page.get_by_role("tab", name="Attention", exact=True).click()
    for rung in RUNGS:
        page.wait_for_selector(f"{rung} .js-plotly-plot", timeout=10_000)  # drawn on opening: no button pressed


def note(page) -> str:
    return page.locator(".lab-note").filter(has_text="tokens → inputs").first.inner_text()


def test_the_ladder_is_drawn_on_opening_readable_and_unclipped(page):
    open_tab(page)
    assert "These are the book's own inputs and seeds" in note(page)
    assert page.locator("#attention-rung-1 text", has_text="0.1385").count() >= 1  # chapter 3's weights
    assert page.locator("#attention-rung-2 text", has_text="-0.0739").count() >= 1  # SelfAttention_v2, seed 789
    assert page.locator("#attention-rung-3 text", has_text="-0.4519").count() >= 1  # CausalAttention, seed 123
    for rung in RUNGS:
        layout = page.evaluate(LAYOUT_JS, rung)
        assert layout["outside"] == [] and layout["overlapping"] == [], (rung, layout)
        assert layout["numberSizes"] and layout["titleSizes"], (rung, layout)
        assert min(layout["numberSizes"]) >= 14 and min(layout["titleSizes"]) >= 16, (rung, layout)
        assert layout["height"] < 1200  # as tall as its rows of 6-token matrices (3 in rung 4), no empty frame
    assert page.locator(".toast-body").count() == 0


def test_enter_an_example_the_arrow_keys_and_a_checkbox_redraw_it(page):
    open_tab(page)
    box = page.get_by_label("Sentence (press Enter to draw it)")
    box.fill("I saw the dog and the dog saw me")
    box.press("Enter")
    page.wait_for_selector(".lab-note:has-text('9 tokens → inputs (9, 3)')", timeout=20_000)
    page.get_by_text("Every effort moves you", exact=True).click()  # an example
    page.wait_for_selector(".lab-note:has-text('4 tokens → inputs (4, 3)')", timeout=20_000)
    assert box.input_value() == "Every effort moves you"
    d_in = page.get_by_label("embedding size d_in (the book uses 3)")
    d_in.locator("xpath=ancestor::*[contains(@class,'block')][1]").locator("input[type=range]").focus()
    page.keyboard.press("ArrowRight")  # keys send `input`, not `release`
    page.wait_for_selector(".lab-note:has-text('4 tokens → inputs (4, 4)')", timeout=20_000)
    page.get_by_label("dropout (as in training)").check()
    page.wait_for_selector("text=Dropout (training only) zeroed", timeout=20_000)
    page.wait_for_selector("#attention-rung-3 text:has-text('after dropout')", timeout=20_000)
    assert page.locator(".toast-body").count() == 0


def test_a_long_sentence_has_no_clipped_labels(page):
    open_tab(page)
    box = page.get_by_label("Sentence (press Enter to draw it)")
    box.fill("The quick brown fox jumps over the lazy dog while the farmer's extraordinarily sleepy cat watches "
             "from the old red barn all day long.")
    box.press("Enter")
    page.wait_for_selector(".lab-note:has-text('24 tokens → inputs (24, 3)')", timeout=20_000)
    page.wait_for_timeout(500)
    for rung in RUNGS:
        layout = page.evaluate(LAYOUT_JS, rung)
        assert layout["outside"] == [] and layout["overlapping"] == [], (rung, layout)


def test_the_plots_are_transparent_in_the_dark_theme(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{app_url}?__theme=dark")
        page.wait_for_selector("text=LLM Lab", timeout=30_000)
        open_tab(page)
        for rung in RUNGS:
            layout = page.evaluate(LAYOUT_JS, rung)
            assert layout["paper"] == "rgba(0, 0, 0, 0)", (rung, layout)  # the page's dark colour shows through
            assert all(fill == "rgba(0, 0, 0, 0)" for fill in layout["backgrounds"]), (rung, layout)
    finally:
        context.close()
