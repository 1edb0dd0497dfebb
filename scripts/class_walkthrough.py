"""A class in two browser pages: a teacher leads, a student follows; prints what each did and saw, with times.

    python scripts/class_walkthrough.py                      # starts the app on a free port, shots in /tmp/class_walk
    python scripts/class_walkthrough.py --url http://127.0.0.1:7860/ --pace 20

It plays a short lesson in headless Chromium (two browser contexts, so two people): the teacher starts a class,
the student joins with the code's link and a nickname, the teacher types a sentence, changes tabs, locks the
settings and sets a learning rate for everyone, asks which token comes next and reveals the class's answers;
the student follows, detaches to explore, rejoins, and finally sees the class end. Each step prints one line:
the time since the start, who acted, and what the other page showed and how long it took to show it; a PNG of
both pages is saved after each step. ``--pace`` seconds between steps stretches it to a real lesson's rhythm
(``--pace 40`` makes about 10 minutes). Needs Debian's Chromium (``apt-get install -y chromium``) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_BOX = "#tok-text textarea"
FOLLOW_S = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(port: int, log_path: str) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    log = open(log_path, "w")  # noqa: SIM115 (the server writes to it until it stops)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(180):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"the app did not start; see {log_path}")


def selected_tab(page) -> str:
    return page.locator("button[role=tab][aria-selected=true]").first.inner_text().strip()


def wait_until(check, timeout: float = FOLLOW_S) -> float | None:
    """Seconds until check() is true, or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


class Lesson:
    def __init__(self, teacher, student, out: Path, pace: float):
        self.teacher, self.student, self.out, self.pace = teacher, student, out, pace
        self.start, self.step = time.monotonic(), 0
        self.events = 0  # the Gradio events the student's page sent since the last step (following sends none)
        student.on("request", lambda request: self.count(request.url))

    def count(self, url: str) -> None:
        if "/queue/join" in url:
            self.events += 1

    def say(self, who: str, did: str, saw: str) -> None:
        self.step += 1
        minutes, seconds = divmod(time.monotonic() - self.start, 60)
        events, self.events = self.events, 0
        print(f"{int(minutes):02d}:{seconds:04.1f}  {who:<8} {did}\n{'':16}{saw} "
              f"[the student's page sent {events} Gradio event{'' if events == 1 else 's'}]", flush=True)
        for name, page in (("teacher", self.teacher), ("student", self.student)):
            page.screenshot(path=str(self.out / f"{self.step:02d}-{name}.png"))
        time.sleep(self.pace)

    def followed(self, check, what: str) -> str:
        seconds = wait_until(check)
        return f"the student's page: {what} after {seconds:.1f} s" if seconds is not None else \
            f"the student's page did NOT show {what} within {FOLLOW_S:.0f} s"


def status(page) -> str:
    return " ".join(page.locator("#class-status").inner_text().split())


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def run(base: str, out: Path, pace: float) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        size = {"viewport": {"width": 1400, "height": 1000}}
        teacher = browser.new_context(**size).new_page()
        student = browser.new_context(**size).new_page()
        teacher.goto(base)
        teacher.wait_for_selector("text=LLM Lab", timeout=60_000)
        teacher.get_by_text("Class mode: lead a class, or join one").click()
        teacher.locator("#class-start").click()
        teacher.wait_for_selector("#class-code", timeout=15_000)
        code = teacher.locator("#class-code").inner_text().strip()
        lesson = Lesson(teacher, student, out, pace)
        lesson.say("teacher", f"pressed Start a class: code {code}, link {base}?class={code} and its QR code",
                   "(the projector shows the code and the QR image)")

        student.goto(f"{base}?class={code}")
        nickname = student.locator("#class-nickname textarea, #class-nickname input").first
        nickname.wait_for(timeout=30_000)
        nickname.fill("Ada")
        student.locator("#class-join-button").click()
        student.wait_for_selector(f"text=You are in class {code} as Ada", timeout=10_000)
        seconds = wait_until(lambda: "Ada" in teacher.locator("#class-roster").inner_text(), 10)
        lesson.say("student", "opened the link, typed the nickname Ada and pressed Join",
                   f"status: {status(student)!r}; the teacher's list shows Ada after {seconds:.1f} s")

        sentence = "The students watch the model read this sentence, token by token."
        teacher.locator(TEXT_BOX).fill(sentence)
        lesson.say("teacher", f"typed {sentence!r} into the Tokenizer tab",
                   lesson.followed(lambda: student.locator(TEXT_BOX).input_value() == sentence
                                   and "token" in student.locator("#tok-spans").inner_text(),
                                   "the same text, with its coloured tokens"))

        for tab in ("Attention", "Inside GPT"):
            open_tab(teacher, tab)
            lesson.say("teacher", f"opened the {tab} tab",
                       lesson.followed(lambda tab=tab: selected_tab(student) == tab, f"the {tab} tab"))

        teacher.locator("#class-lock input").check()
        open_tab(teacher, "Pretrain")
        lr = teacher.get_by_label("peak learning rate")
        lr.fill("0.003")
        lr.press("Enter")
        student_lr = student.get_by_label("peak learning rate")
        saw = lesson.followed(lambda: selected_tab(student) == "Pretrain" and student_lr.input_value() == "0.003"
                              and student_lr.is_disabled(), "the Pretrain tab, lr 0.003, settings greyed out")
        lesson.say("teacher", "ticked Lock settings, opened Pretrain and set the peak learning rate to 0.003",
                   f"{saw}; status: {status(student)!r}")

        teacher.locator("#class-lock input").uncheck()
        open_tab(teacher, "Generate")
        wait_until(lambda: selected_tab(student) == "Generate")
        teacher.locator("#class-ask-next").click()
        seconds = wait_until(lambda: student.locator("#class-answer label").count() >= 2, 10)
        choices = [label.inner_text().strip() for label in student.locator("#class-answer label").all()]
        lesson.say("teacher", "unlocked, opened Generate and pressed Ask: which token comes next?",
                   f"the student's page: the question and {len(choices)} choices {choices} after "
                   f"{seconds if seconds is None else round(seconds, 1)} s")

        student.locator("#class-answer label").first.click()
        student.locator("#class-send-answer").click()
        time.sleep(2)
        lesson.say("student", f"picked {choices[0]!r} and pressed Answer", "the student's page: "
                   f"{' '.join(student.locator('#class-panel').inner_text().split())[-120:]!r}")

        teacher.locator("#class-reveal").click()
        seconds = wait_until(lambda: "Answer" in student.locator("#class-question-text").inner_text(), 10)
        lesson.say("teacher", "pressed Reveal", f"the student's page: the class's answers and the model's after "
                   f"{seconds if seconds is None else round(seconds, 1)} s: "
                   f"{' '.join(student.locator('#class-question-text').inner_text().split())[:160]!r}")

        student.locator("#class-following input").uncheck()
        time.sleep(1)
        open_tab(teacher, "Tokenizer")
        stayed = wait_until(lambda: selected_tab(student) != "Generate", 4) is None
        lesson.say("student", "unticked Follow the teacher; then the teacher opened the Tokenizer tab",
                   f"the student's page stayed on {selected_tab(student)!r}: {stayed}; status: {status(student)!r}")

        student.locator("#class-following input").check()
        lesson.say("student", "ticked Follow the teacher again",
                   lesson.followed(lambda: selected_tab(student) == "Tokenizer", "the teacher's Tokenizer tab"))

        teacher.locator("#class-end").click()
        seconds = wait_until(lambda: "ended" in status(student), 10)
        lesson.say("teacher", "pressed End the class", f"the student's page says {status(student)!r} after "
                   f"{seconds if seconds is None else round(seconds, 1)} s")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running LLM Lab (default: start app.py on a free port)")
    parser.add_argument("--out", default="/tmp/class_walk", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between steps (default: %(default)s)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if args.url is None:
        port = free_port()
        server = start_app(port, str(out / "server.log"))
        base = f"http://127.0.0.1:{port}/"
    else:
        base = args.url if args.url.endswith("/") else args.url + "/"
    try:
        run(base, out, args.pace)
    finally:
        if server is not None:
            server.terminate()


if __name__ == "__main__":
    main()
