"""Screenshot every tab of the app in headless Chromium, in the light and the dark theme.

    python scripts/screenshots.py                  # all tabs, both themes, into /tmp/lab_shots
    python scripts/screenshots.py --tabs generate --out shots --press "Generate"

It launches the app on a free local port, opens each tab (pressing the tab's main button when --press names
it), waits for the plots to draw and saves `<tab>-<theme>.png` full-page shots to look at before a change lands.
Needs Debian's Chromium (`apt-get install -y chromium`) and Playwright.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABS = {"tokenizer": "Tokenizer", "attention": "Attention", "inside": "Inside GPT", "generate": "Generate",
        "pretrain": "Pretrain", "classify": "Classify", "instruct": "Instruct"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", default=",".join(TABS), help="comma-separated tab ids (default: all)")
    parser.add_argument("--themes", default="light,dark", help="light, dark or both (default: %(default)s)")
    parser.add_argument("--out", default="/tmp/lab_shots", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--press", default="", help="comma-separated button labels to press in each tab")
    parser.add_argument("--wait-ms", type=int, default=4000, help="wait after opening a tab (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    import app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = app.build_demo()
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for theme in args.themes.split(","):
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(f"{demo.local_url}?__theme={theme}")
                page.wait_for_selector("text=LLM Lab", timeout=60_000)
                for tab in args.tabs.split(","):
                    page.get_by_role("tab", name=TABS[tab]).click()
                    for label in filter(None, args.press.split(",")):
                        button = page.get_by_role("button", name=label, exact=True)
                        if button.count():
                            button.first.click()
                    page.wait_for_timeout(args.wait_ms)
                    path = out / f"{tab}-{theme}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path)
                page.close()
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
