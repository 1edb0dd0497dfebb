"""Projector mode and readable colours: the page script, the toggle, sizes, and WCAG contrast in every mode.

The contrast test measures what the browser draws: for each selector it takes the computed text colour (an SVG
text's fill) and the background under it (the first opaque background up the tree, semi-transparent ones blended
in), and computes the WCAG 2 contrast ratio. Text must reach 4.5:1 in the light theme, the dark theme and
projector mode. Run with `-s` to see the table of ratios.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import app
from ui.common import PAGE_JS, PROJECTOR_PARAM, page_head
from visualizations.tokens import CHIP_TEXT

MIN_CONTRAST = 4.5

# Colours as [r, g, b, a], alpha blending, WCAG luminance, and the opaque colour under an element.
COLOR_HELPERS = r"""
  const parse = (text) => { const v = (text.match(/[\d.]+/g) || []).map(Number); return v.length >= 3 ? [v[0], v[1], v[2], v.length > 3 ? v[3] : 1] : null; };
  const blend = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const lum = (c) => { const f = (x) => (x /= 255) <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  function background(element) {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const color = parse(getComputedStyle(node).backgroundColor);
      if (color && color[3] > 0) { layers.push(color); if (color[3] >= 1) break; }
    }
    let result = document.body.classList.contains("dark") ? [11, 15, 25, 1] : [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = blend(layer, result);
    return result;
  }
"""

# The colour of a text element and of what is under it, and their WCAG contrast ratio; `pseudo` reads ::after.
CONTRAST_JS = r"""
([selector, pseudo, textStart]) => {
""" + COLOR_HELPERS + r"""  const visible = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  let candidates = [...document.querySelectorAll(selector)].filter(visible);
  if (textStart) candidates = candidates.filter(e => e.textContent.trim().startsWith(textStart));
  const element = candidates[0];
  if (!element) return null;
  const style = getComputedStyle(element, pseudo || null);
  const isSvg = element instanceof SVGElement;
  const bg = background(isSvg ? element.ownerSVGElement : element);
  const fg = blend(parse(isSvg ? style.fill : style.color), bg);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), fg: fg.slice(0, 3).map(Math.round), bg: bg.slice(0, 3).map(Math.round),
          size: parseFloat(style.fontSize), text: (pseudo ? style.content : element.textContent).trim().slice(0, 30)};
}
"""

# Every visible text on the page whose contrast is under 4.5:1, grouped by colour pair. Skipped: the numbers
# inside heatmap cells and bars (plotly picks their colour against each cell) and the hover boxes.
AUDIT_JS = r"""
(minimum) => {
""" + COLOR_HELPERS + r"""  const low = {};
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const element = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !element) continue;
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const isSvg = element instanceof SVGElement;
    if (isSvg && (element.closest(".heatmaplayer, .hoverlayer") || element.classList.contains("bartext-inside"))) continue;
    const style = getComputedStyle(element);
    if (style.visibility === "hidden" || parseFloat(style.opacity) === 0) continue;
    const bg = background(isSvg ? element.ownerSVGElement : element);
    const colour = parse(isSvg ? style.fill : style.color);
    if (!colour) continue;
    const fg = blend(colour, bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio >= minimum) continue;
    const key = `rgb(${fg.slice(0, 3).map(Math.round)}) on rgb(${bg.slice(0, 3).map(Math.round)}): ${ratio.toFixed(2)}:1`;
    (low[key] = low[key] || []).push(`${element.tagName.toLowerCase()}.${(element.getAttribute("class") || "").split(" ")[0]} "${walker.currentNode.textContent.trim().slice(0, 30)}"`);
  }
  return low;
}
"""

TAB_NAMES = ("Tokenizer", "Attention", "Inside GPT", "Generate", "Pretrain", "Classify", "Instruct")

# (what, tab to open, selector, pseudo-element, the text the element starts with)
CHECKS = [
    ("explanation text", "Tokenizer", ".lab-explain p", None, None),
    ("model picker note", "Tokenizer", ".info-text", None, "The bundled"),
    ("token chip", "Tokenizer", "#tok-spans span.tok", None, None),
    ("token id under a chip", "Tokenizer", "#tok-spans span.tok", "::after", None),
    ("replay note", "Tokenizer", "#tok-replay .lab-note", None, None),
    ("replay step number", "Tokenizer", "#tok-replay td.step-no", None, None),
    ("training-window token", "Tokenizer", "#tok-windows td.tok", None, None),
    ("plot tick label", "Tokenizer", ".js-plotly-plot .ytick text", None, None),
    ("plot title", "Tokenizer", ".js-plotly-plot .infolayer .annotation-text", None, None),
    ("code comment", "Tokenizer", ".lab-code .cm-line span", None, "# gpt_core"),
    ("code docstring", "Tokenizer", ".lab-code .cm-line span", None, '"""'),
    ("code line", "Tokenizer", ".lab-code .cm-line", None, None),
    ("loss-mask legend", "Instruct", ".lab-mask-legend span", None, None),
    ("loss-mask input token", "Instruct", ".lab-mask .cell .inp", None, None),
    ("loss-mask -100 target", "Instruct", ".lab-mask .cell.ignored .tgt", None, None),
    ("loss-mask counted target", "Instruct", ".lab-mask .cell.counted .tgt", None, None),
    ("instruct note", "Instruct", ".lab-note p", None, None),
]

MODES = {"light": "?__theme=light&projector=0", "dark": "?__theme=dark&projector=0",
         "projector": "?__theme=light&projector=1", "projector-dark": "?__theme=dark&projector=1"}


# ----- without a browser -------------------------------------------------------------------------------------------


def test_page_script_is_valid_javascript(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "page.js"
    script.write_text(PAGE_JS)
    result = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_launch_options_carry_the_page_script_and_the_projector_css():
    options = app.launch_options()
    assert options["head"] == page_head()
    assert f'get("{PROJECTOR_PARAM}")' in PAGE_JS
    assert ":root.lab-projector" in options["css"] and ".dark .js-plotly-plot" in options["css"]
    assert 'id="lab-projector-toggle"' in app.INTRO
    assert f"color: {CHIP_TEXT}" in options["css"]  # the text colour of every token chip


# ----- in a browser ------------------------------------------------------------------------------------------------


def _open(browser, url: str, tab: str = "Tokenizer"):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#tok-spans span.tok", timeout=60_000)
    if tab != "Tokenizer":
        page.get_by_role("tab", name=tab).click()
    return context, page


def _font_px(page, selector: str, pseudo: str | None = None) -> float:
    return page.evaluate(
        "([s, p]) => parseFloat(getComputedStyle([...document.querySelectorAll(s)]"
        ".find(e => e.getBoundingClientRect().width > 0), p).fontSize)", [selector, pseudo])


def _open_code(page, title: str = "The encoder"):
    """Open a code panel of the visible tab; wait until it shows and the page script has checked its colours."""
    page.locator("[role=tabpanel]:visible").first.get_by_text(title, exact=True).first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.lab-code .cm-line')]"
                           ".some(e => e.getBoundingClientRect().height > 0)", timeout=20_000)
    page.wait_for_function("() => document.getElementById('lab-code-colours') !== null", timeout=10_000)


TICK_PX = "parseFloat(getComputedStyle(document.querySelector('.js-plotly-plot .ytick text')).fontSize)"


@pytest.mark.browser
def test_projector_mode_from_the_address_persists_and_the_checkbox_turns_it_off(browser, app_url):
    context, page = _open(browser, f"{app_url}?{PROJECTOR_PARAM}=1")
    try:
        assert page.evaluate("document.documentElement.classList.contains('lab-projector')")
        box = page.locator("#lab-projector-toggle input")
        assert box.is_checked()
        page.get_by_role("tab", name="Generate").click()  # another tab: still on
        assert page.evaluate("document.documentElement.classList.contains('lab-projector')")
        page.goto(app_url)  # a reload without the parameter: remembered
        page.wait_for_selector("#tok-spans span.tok", timeout=60_000)
        assert page.evaluate("document.documentElement.classList.contains('lab-projector')")
        page.wait_for_selector(".js-plotly-plot .ytick text", timeout=30_000)
        page.wait_for_function(f"() => {TICK_PX} >= 16", timeout=10_000)
        page.locator("#lab-projector-toggle").click()
        assert not page.evaluate("document.documentElement.classList.contains('lab-projector')")
        assert page.evaluate("localStorage.getItem('llm-lab-projector')") == "0"
        page.wait_for_function(f"() => {TICK_PX} < 16", timeout=10_000)  # the plots are redrawn at their own size
        page.reload()
        page.wait_for_selector("#tok-spans span.tok", timeout=60_000)
        assert not page.evaluate("document.documentElement.classList.contains('lab-projector')")
        assert not page.locator("#lab-projector-toggle input").is_checked()
    finally:
        context.close()


@pytest.mark.browser
def test_projector_mode_sizes(browser, app_url):
    sizes = {}
    for mode, query in (("normal", "?projector=0"), ("projector", "?projector=1")):
        context, page = _open(browser, app_url + query)
        try:
            page.wait_for_selector(".js-plotly-plot .ytick text", timeout=30_000)
            page.wait_for_timeout(500)  # the plots drawn before the page script ran are redrawn
            _open_code(page)
            sizes[mode] = {
                "body text": _font_px(page, ".lab-explain p"),
                "model picker note": _font_px(page, ".info-text"),
                "token": _font_px(page, "#tok-spans span.tok"),
                "token id": _font_px(page, "#tok-spans span.tok", "::after"),
                "plot tick label": _font_px(page, ".js-plotly-plot .ytick text"),
                "plot title": _font_px(page, ".js-plotly-plot .infolayer .annotation-text"),
                "code": _font_px(page, ".lab-code .cm-line"),
            }
            ids = page.evaluate("[...document.querySelectorAll('#tok-spans span.tok')].slice(0, 3)"
                                ".map(e => getComputedStyle(e, '::after').content)")
            assert ids == ['"15496"', '"11"', '"995"']  # Hello , ·world: the ids are printed under the tokens
        finally:
            context.close()
    print("\nfont sizes (px):", sizes)
    normal, projector = sizes["normal"], sizes["projector"]
    assert normal["code"] >= 14 and normal["model picker note"] >= 14
    assert projector["body text"] >= 18 and projector["model picker note"] >= 16
    assert projector["plot tick label"] >= 16 and projector["plot title"] >= 16 and projector["code"] >= 16
    assert projector["token id"] > normal["token id"]


@pytest.mark.browser
def test_text_contrast_in_light_dark_and_projector_modes(browser, app_url):
    rows, failures = [], []
    for mode, query in MODES.items():
        for tab in ("Tokenizer", "Instruct"):
            context, page = _open(browser, app_url + query, tab)
            try:
                if tab == "Tokenizer":
                    page.wait_for_selector(".js-plotly-plot .ytick text", timeout=30_000)
                    _open_code(page)
                else:
                    page.wait_for_selector(".lab-mask .cell", state="visible", timeout=30_000)
                page.wait_for_timeout(300)
                for what, where, selector, pseudo, start in CHECKS:
                    if where != tab:
                        continue
                    result = page.evaluate(CONTRAST_JS, [selector, pseudo, start])
                    if result is None:
                        failures.append(f"{mode}: {what} ({selector}) not found")
                        continue
                    rows.append((mode, what, selector + (pseudo or ""), result))
                    if result["ratio"] < MIN_CONTRAST:
                        failures.append(f"{mode}: {what} {result}")
            finally:
                context.close()
    print(f"\n{'mode':<15}{'what':<26}{'ratio':>7}  {'size':>5}  text / background")
    for mode, what, selector, result in rows:
        print(f"{mode:<15}{what:<26}{result['ratio']:>6.1f}:1 {result['size']:>5.1f}  "
              f"rgb{tuple(result['fg'])} on rgb{tuple(result['bg'])}  [{selector}]")
    assert not failures, "\n".join(failures)


@pytest.mark.browser
def test_no_visible_text_under_4_5_to_1_on_any_tab(browser, app_url):
    failures = []
    for mode in ("light", "dark"):
        context, page = _open(browser, app_url + MODES[mode])
        try:
            for tab in TAB_NAMES:
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1500)  # the tab's first views and plots draw
                if tab == "Instruct":  # and one code panel
                    _open_code(page, "The gpt_core code this tab runs")
                for pair, examples in page.evaluate(AUDIT_JS, MIN_CONTRAST).items():
                    failures.append(f"{mode} / {tab}: {pair} ({len(examples)}x) e.g. {examples[:3]}")
        finally:
            context.close()
    assert not failures, "\n".join(failures)
