"""Pieces every tab uses: the explanation block, the source viewer and friendly error handling."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
import numbers
import textwrap
from collections.abc import Callable

import gradio as gr

log = logging.getLogger("llm_lab")

# Text pasted into any tab is cut to this many characters before the heavy work starts.
MAX_INPUT_CHARS = 1_000_000


def explain(markdown: str) -> gr.Markdown:
    """A short plain-language explanation at the top of a tab."""
    return gr.Markdown(textwrap.dedent(markdown).strip(), elem_classes=["lab-explain"])


def source_of(*objects: object) -> str:
    """The source code of functions, classes or modules, joined for the viewer.

    >>> "def source_of" in source_of(source_of)
    True
    """
    parts = []
    for obj in objects:
        module = inspect.getmodule(obj)
        where = f"# {module.__name__}" if module else ""
        parts.append(f"{where}\n{inspect.getsource(obj)}".strip())
    return "\n\n\n".join(parts)


FAST_LAYER_NOTE = ("# The book layer below is what computes this view. The app also applies the fast layer\n"
                   "# (gpt_core.fast: fused kernels, memory layouts, caches): same maths, tested equal.\n\n")

# A code panel shows this many lines before it scrolls: about one projected screen of 15 px text (the app's CSS
# sets the size of .lab-code text, and PAGE_JS darkens or lightens any syntax colour under 6:1 contrast).
CODE_LINES = 44


def show_source(*objects: object, title: str = "The gpt_core code this tab runs") -> gr.Code:
    """A collapsed accordion that shows the engine code behind a view, so students can read what runs.

    When the fast layer is on (the default; ``LLM_LAB_PLAIN=1`` turns it off), a first comment says so.
    """
    from gpt_core.fast.settings import plain_mode

    note = "" if plain_mode() else FAST_LAYER_NOTE
    with gr.Accordion(title, open=False):
        return gr.Code(value=note + source_of(*objects), language="python", interactive=False,
                       max_lines=CODE_LINES, elem_classes=["lab-code"])


# ---------------------------------------------------------------------------------------------------------------
# Projector mode and readable colours (the page script; app.py passes it to launch() as `head`)
# ---------------------------------------------------------------------------------------------------------------

PROJECTOR_PARAM = "projector"  # ?projector=1 turns projector mode on (and ?projector=0 off), remembered

# Runs once per page, before the app has drawn. It
# 1. puts the class `lab-projector` on <html> when projector mode is on (the app's CSS then sets larger sizes),
#    from ?projector=1/0 or else from localStorage, and keeps every #lab-projector-toggle checkbox (a
#    `<label id="lab-projector-toggle"><input type="checkbox"> ...</label>` in the page, see app.INTRO) in step;
# 2. wraps Plotly.react / Plotly.newPlot so that in projector mode every layout font (titles, ticks, legends,
#    annotations, colour bars) is drawn at 16 px or more *before* plotly lays the figure out: the margins grow
#    with the labels, nothing overlaps. Toggling redraws the plots already on the page;
# 3. checks the syntax colours of the code panels (.lab-code) against their background and darkens (light
#    theme) or lightens (dark theme) any colour under 6:1 (WCAG asks 4.5:1; a projector washes colours out),
#    so docstrings and comments stay readable.
CLASS_WAIT_S = 25.0  # class mode: a following page's ask for the next version waits this long at most (ui.classroom)
CLASS_SPREAD_S = 1.0  # ... then, after a change, it fetches the update after a random pause of up to this
PAGE_JS = r"""
(() => {
  const KEY = "llm-lab-projector", CLASS = "lab-projector", MIN_FONT = 16, MIN_CONTRAST = 6;
  const root = document.documentElement;
  const asked = new URLSearchParams(location.search).get("%(param)s");
  const remember = (on) => { try { localStorage.setItem(KEY, on ? "1" : "0"); } catch (error) {} };
  const remembered = () => { try { return localStorage.getItem(KEY) === "1"; } catch (error) { return false; } };
  if (asked !== null) remember(["1", "true", "on", "yes"].includes(asked.toLowerCase()));
  const isOn = () => root.classList.contains(CLASS);

  // ---- 2. plot fonts --------------------------------------------------------------------------------------
  function enlarge(layout) {
    const copy = JSON.parse(JSON.stringify(layout || {}));
    copy.font = Object.assign({}, copy.font, {size: Math.max((copy.font && copy.font.size) || 12, MIN_FONT)});
    (function walk(node) {
      for (const [key, value] of Object.entries(node)) {
        if (!value || typeof value !== "object" || key === "template") continue;
        if (/font$/i.test(key) && typeof value.size === "number") value.size = Math.max(value.size, MIN_FONT);
        walk(value);
      }
    })(copy);
    return copy;
  }
  function wrap(Plotly) {
    if (!Plotly || Plotly.__labWrapped) return;
    for (const name of ["react", "newPlot"]) {
      const original = Plotly[name];
      if (typeof original !== "function") continue;
      Plotly[name] = function (gd, data, layout, config, ...rest) {
        if (!gd || typeof gd !== "object" || !Array.isArray(data)) return original.call(this, gd, data, layout, config, ...rest);
        gd.__labFigure = {layout: layout, config: config};
        return original.call(this, gd, data, isOn() ? enlarge(layout) : layout, config, ...rest);
      };
    }
    Plotly.__labWrapped = true;
  }
  if (window.Plotly) wrap(window.Plotly);
  else {
    let plotly;
    Object.defineProperty(window, "Plotly", {
      configurable: true, enumerable: true, get: () => plotly, set: (value) => { plotly = value; wrap(value); },
    });
  }
  function redrawPlots() {
    const Plotly = window.Plotly;
    if (!Plotly) return;
    for (const gd of document.querySelectorAll(".js-plotly-plot")) {
      if (!gd.data) continue;
      const saved = gd.__labFigure || {layout: gd.layout, config: {responsive: true}};
      Promise.resolve(Plotly.react(gd, gd.data, saved.layout, saved.config)).then(() => Plotly.Plots.resize(gd));
    }
  }

  // ---- 1. the mode and its checkbox -----------------------------------------------------------------------
  function apply(on, redraw) {
    root.classList.toggle(CLASS, on);
    for (const box of document.querySelectorAll("#lab-projector-toggle input")) box.checked = on;
    if (redraw) redrawPlots();
  }
  const initial = asked !== null ? ["1", "true", "on", "yes"].includes(asked.toLowerCase()) : remembered();
  apply(initial, initial);  // plots drawn before this script ran are redrawn large
  document.addEventListener("change", (event) => {
    const box = event.target.closest && event.target.closest("#lab-projector-toggle input");
    if (!box) return;
    remember(box.checked);
    apply(box.checked, true);
  });

  // ---- 3. code colours ------------------------------------------------------------------------------------
  const rgb = (text) => (text.match(/[\d.]+/g) || []).slice(0, 4).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (c) => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  function backgroundOf(element) {
    for (let node = element; node; node = node.parentElement) {
      const color = rgb(getComputedStyle(node).backgroundColor);
      if (color.length >= 3 && (color.length === 3 || color[3] > 0.5)) return color.slice(0, 3);
    }
    return document.body.classList.contains("dark") ? [11, 15, 25] : [255, 255, 255];
  }
  function readable(color, background) {
    const target = luminance(background) > 0.3 ? [0, 0, 0] : [255, 255, 255];
    for (let mix = 0; mix <= 1.0001; mix += 0.05) {
      const candidate = color.map((c, i) => Math.round(c + (target[i] - c) * mix));
      if (contrast(candidate, background) >= MIN_CONTRAST) return mix === 0 ? null : `rgb(${candidate.join(", ")})`;
    }
    return `rgb(${target.join(", ")})`;
  }
  const fixes = document.createElement("style");
  fixes.id = "lab-code-colours";
  let fixedFor = "";
  function fixCodeColours() {
    const editor = document.querySelector(".lab-code .cm-editor");
    if (!editor) return;
    const background = backgroundOf(editor);
    const sheets = [...document.styleSheets, ...(document.adoptedStyleSheets || [])];
    let count = 0;
    for (const sheet of sheets) { try { count += sheet.cssRules.length; } catch (error) {} }
    const key = background.join() + ":" + count + ":" + editor.className;
    if (key === fixedFor) return;
    fixedFor = key;
    const rules = [];
    for (const sheet of sheets) {
      let list;
      try { list = sheet.cssRules; } catch (error) { continue; }
      for (const rule of list) {
        if (!rule.selectorText || !/^\.ͼ[\w-]+$/.test(rule.selectorText) || !rule.style.color.startsWith("rgb")) continue;
        const better = readable(rgb(rule.style.color).slice(0, 3), background);
        if (better) rules.push(`.lab-code .cm-content ${rule.selectorText} { color: ${better} !important; }`);
      }
    }
    fixes.textContent = rules.join("\n");
    if (!fixes.isConnected) document.head.appendChild(fixes);
  }

  // Keep the checkbox and the code colours in step with what the app draws (tabs, accordions, theme changes).
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      for (const box of document.querySelectorAll("#lab-projector-toggle input")) box.checked = isOn();
      fixCodeColours();
    });
  }).observe(document.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});

  // Class mode, the teacher's page (the one with #class-push): its tab and inputs go to the class when they change
  // (looked at every 0.3 s, at most one push a second), so a page that changes nothing sends nothing.
  let pushedSignature = null, pushedAt = 0;
  setInterval(() => {
    const push = document.querySelector("#class-push");
    if (!push) { pushedSignature = null; return; }
    const tabs = [...document.querySelectorAll("#lab-tabs [role=tab]")];
    const selected = String(Math.max(0, tabs.findIndex(tab => tab.getAttribute("aria-selected") === "true")));
    const field = document.querySelector("#class-current-tab textarea, #class-current-tab input");
    if (field && field.value !== selected) {
      field.value = selected;
      field.dispatchEvent(new Event("input", {bubbles: true}));
    }
    const values = [...document.querySelectorAll("input, textarea, select")].map(
      input => (input.type === "checkbox" || input.type === "radio") ? String(input.checked) : input.value);
    const signature = selected + "\u0001" + values.join("\u0001");
    if (signature !== pushedSignature && performance.now() - pushedAt >= 1000) {
      pushedSignature = signature;
      pushedAt = performance.now();
      setTimeout(() => push.click(), 100);  // once the tab's index has reached Gradio
    }
  }, 300);

  // Class mode (ui/classroom.py): a page that joined a class waits for the class's next version (a plain GET the
  // server answers with "18 attention 3 follow" when the class changes, or after %(wait_s)s s with the same version:
  // the version, the teacher's tab, the version of the status line and follow/lock/free) and, after a random pause
  // (thirty pages that hear of a change together ask one by one), takes the teacher's tab: GET
  // /class_view/CODE/TAB brings its inputs and views, drawn once for the whole class, and the hidden apply button
  // sets them in this page without a Gradio event. A tab without one (or a view that needs this page's own state)
  // comes with the tab's hidden update button, a Gradio event; the status line and the question with #class-update.
  let classVersion = null, classCode = "", classTab = "", classStatus = null, classMode = "";
  const appliedViews = {};  // tab -> what this page last applied ("version:locked:model:tab")
  let takenTab = "";  // the tab the class last moved this page to
  window.labClassView = {};
  // The text values the page just took with a class view whose views came drawn: a `.change` listener that would
  // draw them again asks here first (ui.follow redraw_unless_drawn) and sends nothing for them.
  let drewValues = new Set(), drewUntil = 0;
  window.labClassDrew = value => performance.now() < drewUntil && drewValues.delete(value);
  const pause = ms => new Promise(done => setTimeout(done, ms));
  const base = () => location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const press = selector => { const button = document.querySelector(selector); if (button) button.click(); return !!button; };
  const followsTeacher = () => {
    const box = document.querySelector("#class-following input");
    return classMode === "lock" || (classMode === "follow" && (!box || box.checked));
  };
  async function takeTab(force) {
    const tab = classTab, apply = document.querySelector(`#class-apply-${tab}`);
    if (apply) {
      try {
        const answer = await fetch(`${base()}class_view/${encodeURIComponent(classCode)}/${tab}`, {cache: "no-store"});
        const view = answer.ok ? await answer.json() : {event: true};
        if (!view.event) {
          if (force || appliedViews[tab] !== view.key || takenTab !== tab) {
            appliedViews[tab] = view.key;
            takenTab = tab;
            window.labClassView[tab] = view.data;
            drewValues = new Set(view.data.map(item => item && item.value).filter(value => typeof value === "string"));
            drewUntil = performance.now() + 5000;
            apply.click();
          }
          return;
        }
      } catch (error) {}  // the tab's Gradio update below
    }
    takenTab = tab;
    press(`#class-update-${tab}`) || press("#class-update");
  }
  window.labClassUpdate = () => {  // "Follow the teacher" ticked or unticked: the status line, and the tab
    if (classVersion === null) return;
    setTimeout(() => { press("#class-update"); if (followsTeacher()) takeTab(true); }, 300);
  };
  (async () => {
    for (;;) {
      const live = document.querySelector("#class-live textarea, #class-live input");
      // "K7QXM <seat> [3]": the seat marks the page present; 3, after a join, is the status line the page shows
      const [code, seat, shown] = (live ? live.value.trim() : "").split(/\s+/);
      if (code !== classCode) { classCode = code; classVersion = null; classStatus = shown || null; }  // (re)joined
      if (!code) { await pause(1000); continue; }
      try {
        const query = new URLSearchParams(seat ? {seat} : {});
        if (classVersion !== null) query.set("after", classVersion);
        const answer = await fetch(`${base()}class_version/${encodeURIComponent(code)}?${query}`, {cache: "no-store"});
        const [version, tab, status, mode] = (await answer.text()).trim().split(" ");
        if (!answer.ok) { await pause(2000); continue; }
        if (version !== classVersion) {
          const first = classVersion === null, unlocked = classMode === "lock" && mode !== "lock";
          const statusMoved = status !== classStatus;
          classVersion = version;
          classStatus = status;
          classMode = mode || "";
          classTab = /^[a-z]+$/.test(tab || "") ? tab : "";
          setTimeout(() => {
            if (statusMoved || version === "-1") press("#class-update");  // status line, question (or the end)
            if (version !== "-1" && (followsTeacher() || unlocked)) takeTab(unlocked);  // unlocked: enable inputs
          }, first ? 0 : Math.random() * %(spread_ms)s);
        }
        if (version === "-1") await pause(2000);  // no such class (it ended): ask again now and then
      } catch (error) { await pause(2000); }  // offline or the server restarted: try again soon
    }
  })();
})();
""".replace("%(param)s", PROJECTOR_PARAM).replace("%(wait_s)s", f"{CLASS_WAIT_S:g}").replace(
    "%(spread_ms)s", str(round(CLASS_SPREAD_S * 1000)))


def page_head() -> str:
    """The HTML that app.py passes to `launch(head=...)`: the page script above.

    >>> page_head().startswith("<script>") and "lab-projector" in page_head()
    True
    """
    return f"<script>{PAGE_JS}</script>"


# Errors that mean "your input cannot be used": their message is written for the student.
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ConnectionError, PermissionError)


def student_message(error: Exception) -> str:
    """The message a student sees for an error raised while handling their input.

    Gradio's popup renders HTML, and messages can quote the student's own data, so the text is escaped:

    >>> student_message(ValueError("bad field <img src=x>"))
    'bad field &lt;img src=x&gt;'
    """
    if isinstance(error, EXPECTED_ERRORS):
        message = str(error) or error.__class__.__name__
    else:
        detail = str(error)[:300]
        message = f"Something went wrong ({error.__class__.__name__}: {detail}). The server is still running; try again."
    return html.escape(message, quote=False)


def _report(handler: Callable, error: Exception) -> gr.Error:
    """Log the error (one line for a student's mistake, a traceback only for the unexpected ones) and turn it
    into a gr.Error that Gradio shows without printing a traceback of its own."""
    if isinstance(error, EXPECTED_ERRORS):
        log.info("%s: %s", handler.__name__, error)
    else:
        log.exception("handler %s failed", handler.__name__)
    return gr.Error(student_message(error), print_exception=False)


def friendly(handler: Callable) -> Callable:
    """Wrap an event handler so any exception reaches the browser as a short gr.Error, never a stack trace.

    Works for plain functions and for generators (streamed updates).
    """
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def wrapped_generator(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - every error becomes a message for the student
                raise _report(handler, error) from None

        return wrapped_generator

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001
            raise _report(handler, error) from None

    return wrapped


def cap_text(text: str | None, limit: int, what: str = "text") -> tuple[str, str | None]:
    """Cut `text` to `limit` characters; return it with a note for the user when it was cut.

    >>> cap_text("abcdef", 4)
    ('abcd', 'Showing the first 4 of 6 characters of the text.')
    """
    text = text or ""
    if len(text) <= limit:
        return text, None
    return text[:limit], f"Showing the first {limit:,} of {len(text):,} characters of the {what}."


# ---------------------------------------------------------------------------------------------------------------
# Numbers from sliders, number boxes and API clients
# ---------------------------------------------------------------------------------------------------------------


def _as_sent(payload):
    return payload


def NumberBox(*args, **kwargs) -> gr.Number:  # noqa: N802 - used like the component it makes
    """A gr.Number whose value reaches the handler as sent, for ``number_input`` to check.

    Gradio's own check runs before the handler and answers NaN, infinity or a string from an API client in
    Python's words ("cannot convert float NaN to integer"); the handler's check answers in a student's.
    (A subclass would do the same, but Gradio writes a .pyi stub next to every component subclass.)
    """
    box = gr.Number(*args, **kwargs)
    box.preprocess = _as_sent
    return box


def SliderBox(*args, **kwargs) -> gr.Slider:  # noqa: N802
    """A gr.Slider whose value reaches the handler as sent, for ``number_input`` to check (see NumberBox)."""
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = _as_sent
    return slider


def describe_value(value) -> str:
    """How a bad value is named in a message: short, and never the whole of a huge input."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN (not a number)"
    if isinstance(value, float) and math.isinf(value):
        return "infinity" if value > 0 else "minus infinity"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def number_input(value, what: str, *, minimum: float | None = None, maximum: float | None = None,
                 whole: bool = False, default: float | None = None) -> float | int:
    """A number from an input, checked: finite, in [minimum, maximum], whole when asked; else a ValueError
    whose message names the input (``what``) and the allowed range in plain words.

    ``None`` and an empty string give ``default`` when there is one. Strings holding a number are accepted
    (API clients send them); booleans, lists and other types are refused.

    >>> number_input(8.0, "The batch size", minimum=1, whole=True)
    8
    >>> number_input(float("nan"), "The temperature", minimum=0, maximum=2)
    Traceback (most recent call last):
    ...
    ValueError: The temperature must be a number from 0 to 2; got NaN (not a number).
    >>> number_input(10**30, "The seed", minimum=0, maximum=2**32 - 1, whole=True)
    Traceback (most recent call last):
    ...
    ValueError: The seed must be a whole number from 0 to 4,294,967,295; got 1000000000000000000000000000000.
    """
    kind = "a whole number" if whole else "a number"
    if minimum is not None and maximum is not None:
        allowed = f"{kind} from {minimum:,g} to {maximum:,g}" if not whole else f"{kind} from {int(minimum):,} to {int(maximum):,}"
    elif minimum is not None:
        allowed = f"{kind} of at least {minimum:,g}"
    elif maximum is not None:
        allowed = f"{kind} of at most {maximum:,g}"
    else:
        allowed = kind
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{what} is empty: it must be {allowed}.")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not value.strip().lstrip("+-").isdigit() else int(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
    number = float(value) if not isinstance(value, numbers.Integral) else value
    too_low = minimum is not None and number < minimum
    too_high = maximum is not None and number > maximum
    if isinstance(number, float) and not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
    if whole:
        if number != int(number):
            raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
        return int(number)
    return float(number)


def learning_rate(value) -> float:
    """The peak learning rate: above 0 and at most 10 (a huge one then stops the run at the first NaN loss)."""
    try:
        rate = number_input(value, "The learning rate", minimum=0, maximum=10)
    except ValueError:
        rate = 0.0
    if rate == 0:
        raise ValueError(f"The learning rate must be a number above 0 and at most 10, such as 0.003; "
                         f"got {describe_value(value)}.")
    return rate


def plural(count: int, word: str) -> str:
    """A count with its word, in the plural unless it is one: '1 window', '1,000 tokens'.

    >>> plural(1, "window"), plural(1_000, "token")
    ('1 window', '1,000 tokens')
    """
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"
