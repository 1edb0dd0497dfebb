"""Screenshot every tab of the app in headless Chromium: light theme, dark theme and projector mode.

    python scripts/screenshots.py                         # all tabs, light and dark, into /tmp/lab_shots
    python scripts/screenshots.py --modes light,dark,projector --press "Look inside,Show attention"
    python scripts/screenshots.py --projector --themes dark   # dark theme in projector mode (?projector=1)
    python scripts/screenshots.py --url http://127.0.0.1:7860/ --tabs generate --press Generate

It launches the app on a free local port (or uses the one at --url), opens each tab (pressing the buttons
that --press names where the tab has them, and opening the code panels with --open-code), waits for the plots
to draw and saves `<tab>-<mode>.png` full-page shots to look at before a change lands. A mode is a theme
(light, dark) or `projector` (the light theme with ?projector=1); --projector adds ?projector=1 to every mode.
Needs Debian's Chromium (`apt-get install -y chromium`) and Playwright.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABS = {"tokenizer": "Tokenizer", "attention": "Attention", "inside": "Inside GPT", "generate": "Generate",
        "pretrain": "Pretrain", "classify": "Classify", "instruct": "Instruct"}


def page_address(base: str, mode: str, projector: bool) -> tuple[str, str]:
    """The address to open for a mode, and the name its shots get.

    >>> page_address("http://h/", "dark", False)
    ('http://h/?__theme=dark&projector=0', 'dark')
    >>> page_address("http://h/", "projector", False)
    ('http://h/?__theme=light&projector=1', 'projector')
    >>> page_address("http://h/", "dark", True)
    ('http://h/?__theme=dark&projector=1', 'dark-projector')
    """
    theme = "light" if mode == "projector" else mode
    on = projector or mode == "projector"
    name = mode if mode == "projector" or not projector else f"{mode}-projector"
    return f"{base}?__theme={theme}&projector={int(on)}", name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", default=",".join(TABS), help="comma-separated tab ids (default: all)")
    parser.add_argument("--modes", "--themes", dest="modes", default="light,dark",
                        help="light, dark and/or projector, comma-separated (default: %(default)s)")
    parser.add_argument("--projector", action="store_true", help="projector mode (?projector=1) in every mode")
    parser.add_argument("--out", default="/tmp/lab_shots", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--press", default="", help="comma-separated button labels to press in each tab")
    parser.add_argument("--open-code", action="store_true", help="open each tab's first code panel")
    parser.add_argument("--wait-ms", type=int, default=4000, help="wait after opening a tab (default: %(default)s)")
    parser.add_argument("--url", default="", help="an app already running here (default: launch one)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = None
    if args.url:
        base = args.url if args.url.endswith("/") else args.url + "/"
    else:
        import app

        demo = app.build_demo()
        demo.queue(default_concurrency_limit=4)
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
        base = demo.local_url
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for mode in args.modes.split(","):
                address, name = page_address(base, mode, args.projector)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(address)
                page.wait_for_selector("text=LLM Lab", timeout=60_000)
                for tab in args.tabs.split(","):
                    page.get_by_role("tab", name=TABS[tab]).click()
                    panel = page.locator("[role=tabpanel]:visible").first
                    for label in filter(None, args.press.split(",")):
                        button = panel.get_by_role("button", name=label, exact=True)
                        if button.count():
                            button.first.click()
                    if args.open_code:
                        code = panel.get_by_text("The gpt_core code this tab runs", exact=True)
                        if code.count():
                            code.first.click()
                    page.wait_for_timeout(args.wait_ms)
                    path = out / f"{tab}-{name}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path, flush=True)
                page.close()
            browser.close()
    finally:
        if demo is not None:
            demo.close()


if __name__ == "__main__":
    main()
