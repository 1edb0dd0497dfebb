"""Class mode: a teacher starts a class, students join with a short code, follow the teacher's page, answer
questions, and race their runs on one board.

- **Who is who.** The teacher is the browser that pressed *Start a class*: its signed browser id
  (``ui.runs.owner_of``) and a random teacher token kept in that browser (``gr.BrowserState``) must both match for
  any change to the class; on a shared server ``LLM_LAB_TEACHER_KEY`` must be typed to start one. A student is a
  browser that joined with the code and a nickname (no accounts). A student's session can read the class, never
  change it.
- **Follow me.** The teacher's page sends its tab, its model and the followed inputs of every tab (``ui.follow``)
  when they change (and every ``TEACHER_PUSH_S`` seconds); each change bumps the class's version. A following
  student's page asks for the next version (``GET /class_version/CODE?after=V``, a plain route that waits up to
  ``WAIT_S`` seconds for a change: one open request per page, not one a second) and, when it moved, after a random
  pause of up to ``SPREAD_S`` seconds (thirty pages do not ask in the same instant), takes the teacher's tab:
  ``GET /class_view/CODE/TAB`` brings that tab's inputs and its views, drawn once for the whole class with the
  tab's own handlers, and the page sets them itself (``ViewCache``) without a Gradio event (the Tokenizer's text
  does not redraw them again: ``ui.follow.redraw_unless_drawn``); a view that needs the page's own state (a
  tokenizer the student trained) comes with the tab's Gradio update instead. A student can detach ("explore on my
  own") and rejoin, unless the teacher locked the settings.
- **Predict, then reveal.** The teacher asks which token comes next after a prompt (the live model's top three
  and two unlikely tokens, shuffled) or a question of their own; students answer on their pages; the teacher
  reveals the class's answers beside the model's.
- **Class board.** Every member's Pretrain runs on one plot and a leaderboard.
- **Budgets.** At most ``MAX_CLASSES`` classes of ``MAX_STUDENTS`` students, in memory; a class no one has used
  for ``IDLE_HOURS`` goes. Every string a student or teacher types is bounded and escaped.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import torch

from gpt_core.generate import next_token_probs
from ui import models, pretrain_tab
from ui.budgets import env_number
from ui.common import CLASS_SPREAD_S, CLASS_WAIT_S, friendly
from ui.follow import FollowedTab, followed_tabs
from ui.runs import job_manager, latest_job, owner_of
from visualizations.attention import fast_figure
from visualizations.compare import RunCurve, compare_figure

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, no 1/I: read from a projector at the back of a room
CODE_LENGTH = 5
MAX_CLASSES = int(env_number("LLM_LAB_MAX_CLASSES", 20))
MAX_STUDENTS = int(env_number("LLM_LAB_CLASS_SIZE", 60))
IDLE_HOURS = env_number("LLM_LAB_CLASS_HOURS", 6)
TEACHER_KEY_ENV = "LLM_LAB_TEACHER_KEY"
WAIT_S = CLASS_WAIT_S  # a following page's ask for the next version is answered within this (ui.common PAGE_JS)
SPREAD_S = CLASS_SPREAD_S  # ... and it fetches the change after a random pause of up to this (goal: within 2 s)
MAX_WAITING = int(env_number("LLM_LAB_CLASS_WAITING", 400))  # asks held open at once; more are answered at once
AWAY_S = 2 * WAIT_S + 10  # a student's page not heard from for this long shows as away in the teacher's list
TEACHER_PUSH_S = 5.0  # the teacher page's push on a timer (the roster, the answers); a change goes out at once
BOARD_S = 5.0  # an open class board redraws every 5 s: the race is live
MAX_NICKNAME = 24
MAX_QUESTION = 300
MAX_CHOICE = 60
MAX_CHOICES = 6
MAX_VALUE_CHARS = 4_000  # a followed input's value (a text box) as the class keeps it
TEACHER_KEY = "llm_lab_teacher"
STUDENT_KEY = "llm_lab_student"


# ---------------------------------------------------------------------------------------------------------------
# The class, in memory
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Question:
    text: str
    choices: list[str]
    answer: int | None  # index of the right choice (None: an opinion question)
    detail: list[str] = field(default_factory=list)  # shown at the reveal beside each choice (the model's %)
    answers: dict[str, int] = field(default_factory=dict)  # owner -> choice index
    revealed: bool = False
    number: int = 1

    def counts(self) -> list[int]:
        counts = [0] * len(self.choices)
        for choice in self.answers.values():
            counts[choice] += 1
        return counts


@dataclass
class ClassRoom:
    code: str
    teacher: str  # the teacher's owner (signed browser id's name)
    token_hash: str  # sha256 of the teacher token the teacher's browser holds
    students: dict[str, str] = field(default_factory=dict)  # owner -> nickname
    tab: str = "tokenizer"
    model: str | None = None
    values: dict[str, dict] = field(default_factory=dict)  # tab id -> {input key: value}
    tab_versions: dict[str, int] = field(default_factory=dict)  # tab id -> version of its values
    following: bool = True  # the teacher's "Follow me"
    locked: bool = False
    version: int = 1
    status_version: int = 1  # moves when a student's status line changes: follow/lock, a question, a reveal
    question: Question | None = None
    last_used: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)  # owner -> when the student's page last asked
    seats: dict[str, str] = field(default_factory=dict)  # seat -> owner: a page's ask names its seat (presence only)

    def bump(self, status: bool = False) -> None:
        self.version += 1
        self.status_version += status
        BELL.ring(self.code)


_classes: dict[str, ClassRoom] = {}
_lock = threading.RLock()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _drop_idle(now: float) -> None:
    for code in [code for code, room in _classes.items() if now - room.last_used > IDLE_HOURS * 3600]:
        del _classes[code]
        BELL.ring(code)


def new_code() -> str:
    """A join code nobody has now: 5 characters from an alphabet without look-alikes.

    >>> code = new_code(); len(code), set(code) <= set(CODE_ALPHABET)
    (5, True)
    """
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in _classes:
            return code


def clean_code(code) -> str:
    """A code as typed or linked: upper case, no spaces; a ValueError for anything else."""
    if not isinstance(code, str) or not 1 <= len(code.strip()) <= 12:
        raise ValueError("A class code is 5 letters and digits, such as K7QXM.")
    code = code.strip().upper()
    if not all(char in CODE_ALPHABET for char in code):
        raise ValueError(f"{html.escape(code)} is not a class code: codes use the letters and digits "
                         f"{CODE_ALPHABET}.")
    return code


def find_class(code) -> ClassRoom:
    with _lock:
        room = _classes.get(clean_code(code))
    if room is None:
        raise ValueError(f"There is no class {html.escape(clean_code(code))} on this server (it may have ended). "
                         f"Check the code on the teacher's screen.")
    return room


def start_class(owner: str, teacher_key: str | None = None) -> tuple[ClassRoom, str]:
    """A new class led by ``owner``; returns it and the teacher token (kept in the teacher's browser only)."""
    required = os.environ.get(TEACHER_KEY_ENV, "")
    if required and not hmac.compare_digest(str(teacher_key or "").encode(), required.encode()):
        raise PermissionError("That is not this server's teacher key: ask whoever runs the server for it "
                              f"(the {TEACHER_KEY_ENV} setting).")
    token = secrets.token_urlsafe(24)
    with _lock:
        now = time.monotonic()
        _drop_idle(now)
        if len(_classes) >= MAX_CLASSES:
            oldest = min(_classes.values(), key=lambda room: room.last_used)
            if now - oldest.last_used < 1800:
                raise ValueError(f"This server already runs {MAX_CLASSES} classes; end one first, or try again "
                                 f"later.")
            del _classes[oldest.code]
            BELL.ring(oldest.code)
        room = ClassRoom(new_code(), owner, _hash(token))
        _classes[room.code] = room
    return room, token


def teacher_class(teacher_state, owner: str) -> ClassRoom:
    """The class this page leads; PermissionError for anyone else (a student, a forged token, another page)."""
    if not isinstance(teacher_state, dict) or not isinstance(teacher_state.get("token"), str):
        raise PermissionError("Only the teacher who started the class can change it, from the page that started "
                              "it.")
    room = find_class(teacher_state.get("code"))
    if room.teacher != owner or not hmac.compare_digest(room.token_hash, _hash(teacher_state["token"][:100])):
        raise PermissionError(f"Only the teacher who started class {room.code} can change it; this page is not "
                              f"the teacher's.")
    room.last_used = time.monotonic()
    return room


def clean_nickname(nickname) -> str:
    """A nickname to show in the class list: 1-24 printable characters.

    >>> clean_nickname("  Ada  Lovelace ")
    'Ada Lovelace'
    """
    if not isinstance(nickname, str):
        raise ValueError("Type a nickname first.")
    nickname = " ".join("".join(char for char in nickname if char.isprintable()).split())
    if not nickname:
        raise ValueError("Type a nickname first: it is how your teacher sees you in the class list.")
    if len(nickname) > MAX_NICKNAME:
        raise ValueError(f"A nickname has at most {MAX_NICKNAME} characters (this one has {len(nickname)}).")
    return nickname


def join_class(code, nickname, owner: str) -> ClassRoom:
    """Add a student (joining again renames); the teacher cannot join their own class."""
    room = find_class(code)
    nickname = clean_nickname(nickname)
    with _lock:
        if owner == room.teacher:
            raise ValueError("This page is the teacher's: open the join link in another browser to join as a student.")
        if owner not in room.students and len(room.students) >= MAX_STUDENTS:
            raise ValueError(f"Class {room.code} is full ({MAX_STUDENTS} students).")
        taken = {name.lower() for who, name in room.students.items() if who != owner}
        if nickname.lower() in taken:
            raise ValueError(f"Someone in the class is already called {html.escape(nickname)}: pick another "
                             f"nickname.")
        room.students[owner] = nickname
        room.last_used = room.seen[owner] = time.monotonic()
    return room


def seat_of(room: ClassRoom, owner: str) -> str:
    """The student's seat: a random name the page sends with each ask for the next version, so the teacher's
    list shows who is still there. It tells the server nothing else and lets a page change nothing.

    >>> room = ClassRoom("K7QXM", "teacher", "hash")
    >>> seat = seat_of(room, "browser-ada"); seat == seat_of(room, "browser-ada"), len(seat)
    (True, 12)
    """
    with _lock:
        seat = next((seat for seat, who in room.seats.items() if who == owner), None)
        if seat is None:
            seat = secrets.token_urlsafe(9)
            room.seats[seat] = owner
    return seat


def live_value(room: ClassRoom, owner: str, status: bool = False) -> str:
    """What a joined page's hidden "live" box holds for its script: "K7QXM <seat>", and with ``status`` the
    version of the status line the page shows already ("K7QXM <seat> 3", after a join), so it does not ask again."""
    return f"{room.code} {seat_of(room, owner)}" + (f" {room.status_version}" if status else "")


def bounded_value(value):
    """A followed input's value as the class keeps it: numbers, short strings, lists of those."""
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [bounded_value(item) for item in list(value)[:50] if isinstance(item, str | int | float | bool)]
    return None  # files and anything else are not followed


def push_view(room: ClassRoom, tab: str, model: str | None, values: dict[str, dict], following: bool,
              locked: bool) -> None:
    """The teacher's page as it is now; the class's version moves only when something changed."""
    with _lock:
        changed = status = (bool(following), bool(locked)) != (room.following, room.locked)
        if (tab, model, bool(following), bool(locked)) != (room.tab, room.model, room.following, room.locked):
            if bool(locked) != room.locked:  # every tab's controls change: their next update re-applies them
                room.tab_versions = {tab_id: version + 1 for tab_id, version in room.tab_versions.items()}
            room.tab, room.model, room.following, room.locked = tab, model, bool(following), bool(locked)
            changed = True
        for tab_id, tab_values in values.items():
            clean = {key: bounded_value(value) for key, value in tab_values.items()}
            if room.values.get(tab_id) != clean:
                room.values[tab_id] = clean
                room.tab_versions[tab_id] = room.tab_versions.get(tab_id, 0) + 1
                changed = True
        if changed:
            room.bump(status)


def class_version(code: str) -> int:
    """The class's version, -1 when there is none: what a following page waits on.

    >>> class_version("ZZZZZ")
    -1
    """
    room = _classes.get(code) if isinstance(code, str) and len(code) <= 12 else None
    return room.version if room is not None else -1


class VersionBell:
    """Wakes the pages waiting for a class's next version.

    A following page asks ``GET /class_version/CODE?after=17`` and the answer comes when the version is no longer
    17, or after ``WAIT_S`` seconds with 17 again (then it asks again). Thirty pages hold thirty idle requests
    instead of sending thirty a second. The waits are ``asyncio`` events in the server's event loop; ``ring``
    is called from any thread (a Gradio handler that changed the class) and hands the wake-up to that loop.
    """

    def __init__(self):
        self.loop = None  # the server's event loop, learnt from the first wait
        self.events: dict[str, object] = {}  # class code -> the asyncio.Event its waiting pages hold
        self.waiting = 0

    def ring(self, code: str) -> None:
        """The class ``code`` changed (or ended): wake its waiting pages. Safe from any thread."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake, code)

    def _wake(self, code: str) -> None:
        event = self.events.pop(code, None)
        if event is not None:
            event.set()

    async def next_version(self, code: str, after: int | None, wait_s: float) -> int:
        """The class's version once it differs from ``after`` (at once when it already does, or when ``after`` is
        None or too many pages wait), or after ``wait_s`` seconds."""
        import asyncio

        self.loop = asyncio.get_running_loop()
        version = class_version(code)
        if after is None or version != after or version < 0 or self.waiting >= MAX_WAITING:
            return version
        event = self.events.setdefault(code, asyncio.Event())  # no await since the check: no ring in between
        self.waiting += 1
        try:
            await asyncio.wait_for(event.wait(), wait_s)
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
        return class_version(code)


BELL = VersionBell()
VERSION_ROUTE = "/class_version/{code}"
VIEW_ROUTE = "/class_view/{code}/{tab}"


def version_answer(room: ClassRoom | None, version: int) -> str:
    """What ``GET /class_version`` answers: "18 attention 3 follow" (the class's version, the teacher's tab, the
    version of the students' status line, and "follow", "lock" or "free": the teacher's Follow me and lock), or
    "-1" when there is no such class.

    >>> version_answer(ClassRoom("K7QXM", "teacher", "hash", tab="attention", version=18), 18)
    '18 attention 1 follow'
    >>> version_answer(None, -1)
    '-1'
    """
    if room is None:
        return str(version)
    mode = "lock" if room.following and room.locked else "follow" if room.following else "free"
    return f"{version} {room.tab} {room.status_version} {mode}"


@dataclass
class TabView:
    """A followed tab as a following page takes it without a Gradio event: the outputs of its apply button (the
    tabs, the model menu, the tab's inputs and views) and how to draw them for a class (``draw(room)``)."""

    blocks: gr.Blocks
    block_fn: object  # the apply button's gradio BlockFunction: its outputs and how Gradio sends them
    draw: object  # room -> the predictions for those outputs


_tab_views: dict[str, TabView] = {}  # tab id -> how to draw it (set by wire)


class ViewCache:
    """The last drawn view of each (class, tab), as the JSON a page applies; drawn once per change for the class.

    Thirty pages ask within a second of a change: the first draws (in a worker thread, with the tab's own handlers
    and Gradio's own postprocessing), the others wait for it and get the same bytes.
    """

    def __init__(self):
        self.views: dict[tuple[str, str], tuple[tuple, bytes]] = {}  # (code, tab) -> (key, JSON)
        self.drawing: dict[tuple[str, str], object] = {}  # (code, tab) -> the asyncio.Lock of its drawing

    @staticmethod
    def key(room: ClassRoom, tab: str) -> tuple:
        """What a tab's view depends on: its values' version, the lock, the model and the tab shown."""
        return room.tab_versions.get(tab), room.locked, room.model, room.tab

    async def get(self, room: ClassRoom, tab: str) -> bytes:
        import asyncio

        import anyio

        where = (room.code, tab)
        lock = self.drawing.setdefault(where, asyncio.Lock())
        async with lock:
            key = self.key(room, tab)
            cached = self.views.get(where)
            if cached is not None and cached[0] == key:
                return cached[1]
            body = await anyio.to_thread.run_sync(draw_view, room, tab, key)
            for gone in [w for w in self.views if w[0] not in _classes]:  # ended classes' views go
                self.views.pop(gone, None)
                self.drawing.pop(gone, None)
            self.views[where] = (key, body)
            return body


VIEWS = ViewCache()


def draw_view(room: ClassRoom, tab: str, key: tuple) -> bytes:
    """The JSON of a tab's view for a class: {"key": "12:False:<model>:attention" (what it was drawn for:
    ``ViewCache.key``), "data": the apply button's outputs as Gradio sends an event's}, or {"event": true} when
    it must be drawn by the tab's Gradio update on each page (a view that needs a page's own state, e.g. a
    tokenizer the student trained)."""
    import asyncio

    import orjson
    from gradio.state_holder import SessionState

    view = _tab_views[tab]
    try:
        predictions = view.draw(room)
        data = asyncio.run(view.blocks.postprocess_data(view.block_fn, list(predictions), SessionState(view.blocks)))
        answer = {"key": ":".join(map(str, key)), "data": data}
    except Exception:  # noqa: BLE001 - the page then asks for the tab's Gradio update, which shows the message
        answer = {"event": True}
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY, default=_as_json)


def _as_json(value):
    """What orjson cannot write itself: Gradio's data models (a gr.JSON's value) as their data, the rest as text."""
    return value.model_dump() if hasattr(value, "model_dump") else str(value)


def add_routes(app) -> None:
    """Add the plain routes of a following page: no Gradio event, and while nothing changes one open request per
    page and no work at all (30 Gradio events a second slowed every explore view of a 2-core server several times
    over: bench/classroom.py). Call it on the launched app.

    - ``GET /class_version/CODE?after=17&seat=S`` waits for the class's next version: "18 attention 3 follow"
      (``version_answer``), "-1" for no such class; the seat (``seat_of``) marks the student's page present.
    - ``GET /class_view/CODE/TAB``: the teacher's inputs of that tab and its views drawn with them, as the JSON the
      page's hidden apply button sets (``ViewCache``); 404 for no such class or a tab without one.
    """
    from fastapi.responses import PlainTextResponse, Response

    async def version(code: str, after: str | None = None, seat: str | None = None) -> PlainTextResponse:
        known = int(after) if after is not None and after.lstrip("-").isdigit() and len(after) <= 12 else None
        room = _classes.get(code) if len(code) <= 12 else None
        if room is not None and seat is not None and (owner := room.seats.get(seat[:20])) is not None:
            room.seen[owner] = time.monotonic()  # the student's page is still there
        latest = await BELL.next_version(code, known, WAIT_S)
        room = _classes.get(code) if latest >= 0 else None
        return PlainTextResponse(version_answer(room, latest), headers={"Cache-Control": "no-store"})

    async def view(code: str, tab: str) -> Response:
        room = _classes.get(code) if len(code) <= 12 else None
        if room is None or tab not in _tab_views or tab not in room.values:
            return PlainTextResponse("no such class or view", status_code=404)
        return Response(await VIEWS.get(room, tab), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    app.add_api_route(VERSION_ROUTE, version, methods=["GET"], include_in_schema=False)
    app.add_api_route(VIEW_ROUTE, view, methods=["GET"], include_in_schema=False)


# ---------------------------------------------------------------------------------------------------------------
# Predict, then reveal
# ---------------------------------------------------------------------------------------------------------------


def next_token_question(model_label: str, prompt: str, seed: int | None = None) -> Question:
    """Which token comes next? The model's three likeliest and two it finds unlikely (ranks ~50 and ~500),
    shuffled; the right answer is its top one. The model's probabilities are shown at the reveal."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("Type a prompt first: the class guesses the token that comes after it.")
    loaded = models.load_choice(model_label)
    ids, _ = models.encode_capped(loaded.tokenizer, prompt[-MAX_QUESTION:], loaded.cfg.context_length)
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([ids]))[0, -1:]  # (1, vocab)
        probs = next_token_probs(logits)[0]
    ranked = torch.argsort(probs, descending=True).tolist()
    picked = ranked[:3] + [ranked[min(49, len(ranked) - 1)], ranked[min(499, len(ranked) - 1)]]
    order = list(range(len(picked)))
    random.Random(seed).shuffle(order)
    tokens = [picked[i] for i in order]
    shown = [f"“{repr(loaded.tokenizer.decode([token]))[1:-1].replace(' ', '·')}”" for token in tokens]
    detail = [f"model: {100 * probs[token].item():.1f}%" for token in tokens]
    text = (f"Which token does **{html.escape(loaded.label)}** put next after "
            f"*“{html.escape(prompt[-120:])}”*?")
    return Question(text, shown, order.index(0), detail)


def own_question(text: str, choices: str) -> Question:
    """A question typed by the teacher: choices separated by | ; a leading * marks the right one (optional).

    >>> q = own_question("Which head looks at the previous token?", "layer 0 head 1 | *layer 0 head 2 | layer 1")
    >>> q.choices, q.answer
    (['layer 0 head 1', 'layer 0 head 2', 'layer 1'], 1)
    """
    text = " ".join(str(text or "").split())[:MAX_QUESTION]
    if not text:
        raise ValueError("Type the question first.")
    parts = [part.strip() for part in str(choices or "").split("|") if part.strip()]
    if not 2 <= len(parts) <= MAX_CHOICES:
        raise ValueError(f"Give 2 to {MAX_CHOICES} choices separated by | (mark the right one with *), such as: "
                         f"lower | *higher | about the same.")
    answer = next((i for i, part in enumerate(parts) if part.startswith("*")), None)
    parts = [part.lstrip("*").strip()[:MAX_CHOICE] or "(empty)" for part in parts]
    return Question(html.escape(text), [html.escape(part) for part in parts], answer)


def ask(room: ClassRoom, question: Question) -> None:
    with _lock:
        question.number = (room.question.number + 1) if room.question else 1
        room.question = question
        room.bump(status=True)


def answer_question(room: ClassRoom, owner: str, choice) -> None:
    if owner not in room.students:
        raise ValueError("Join the class first (type a nickname above), then answer.")
    question = room.question
    if question is None:
        raise ValueError("There is no question now: wait for your teacher's.")
    if question.revealed:
        raise ValueError("The answer has been revealed: wait for the next question.")
    if choice not in question.choices:
        raise ValueError("Pick one of the choices first.")
    with _lock:
        question.answers[owner] = question.choices.index(choice)
        room.last_used = time.monotonic()


def reveal(room: ClassRoom) -> None:
    if room.question is None:
        raise ValueError("Ask a question first.")
    with _lock:
        room.question.revealed = True
        room.bump(status=True)


def answers_plot(question: Question, show_answer: bool) -> gr.Plot:
    """The answers' plot, shown (hidden on a page until there is a question to show the answers of)."""
    return gr.Plot(answers_figure(question, show_answer), visible=True)


def answers_figure(question: Question | None, show_answer: bool):
    """The class's answers as bars (the right one marked once revealed)."""
    if question is None:
        return fast_figure([], {"height": 120, "annotations": [{"text": "No question yet", "showarrow": False,
                                                                 "x": 0.5, "y": 0.5, "xref": "paper",
                                                                 "yref": "paper"}],
                                "xaxis": {"visible": False}, "yaxis": {"visible": False}})
    counts = question.counts()
    labels = [choice + (f" ({question.detail[i]})" if show_answer and question.detail else "")
              for i, choice in enumerate(question.choices)]
    right = question.answer if show_answer else None
    colours = ["#009E73" if i == right else "#0089D6" for i in range(len(counts))]
    texts = [f"{count} ✓" if i == right else str(count) for i, count in enumerate(counts)]
    data = [{"type": "bar", "orientation": "h", "y": labels[::-1], "x": counts[::-1], "text": texts[::-1],
             "textposition": "outside", "marker": {"color": colours[::-1]}, "hoverinfo": "x+y"}]
    title = f"{sum(counts)} answer{'s' if sum(counts) != 1 else ''}" + (" · ✓ the right one" if right is not None
                                                                         else "")
    layout = {"height": 90 + 40 * len(counts), "margin": {"l": 10, "r": 40, "t": 40, "b": 30},
              "title": {"text": title, "font": {"size": 14}}, "xaxis": {"rangemode": "tozero", "dtick": 1},
              "yaxis": {"automargin": True}, "showlegend": False}
    return fast_figure(data, layout)


# ---------------------------------------------------------------------------------------------------------------
# What the pages show
# ---------------------------------------------------------------------------------------------------------------


def join_link(request: gr.Request | None, code: str) -> str:
    """The page's address with ?class=CODE (behind a proxy such as Hugging Face Spaces, the public host).

    An event's request is the queue's (``.../gradio_api/queue/join``): the page is what comes before it.
    """
    base = str(getattr(request, "url", "") or "").split("?")[0].split("/gradio_api")[0] if request else ""
    forwarded = request.headers.get("x-forwarded-host") if request is not None else None
    if forwarded:
        base = f"https://{forwarded.split(',')[0].strip()}"
    return f"{base.rstrip('/')}/?class={code}"


def qr_svg(link: str) -> str:
    """The join link as a QR code (inline SVG, black on white so phones read it in the dark theme too)."""
    import segno

    return segno.make(link, error="m").svg_inline(scale=5, dark="#000000", light="#ffffff")


def join_html(code: str, link: str) -> str:
    return (f"<div class='lab-class-join'><div><div class='lab-class-label'>Join at</div>"
            f"<div class='lab-class-link'>{html.escape(link)}</div><div class='lab-class-label'>class code</div>"
            f"<div class='lab-class-code' id='class-code'>{html.escape(code)}</div></div>"
            f"<div class='lab-class-qr'>{qr_svg(link)}</div></div>")


def roster_html(room: ClassRoom) -> str:
    now = time.monotonic()
    names = sorted(room.students.items(), key=lambda item: item[1].lower())
    if not names:
        return "<p class='lab-note'>No student yet: they open the link, type a nickname and press Join.</p>"
    items = "".join(f"<li{' class=away' if now - room.seen.get(owner, 0) > AWAY_S else ''}>{html.escape(name)}</li>"
                    for owner, name in names)
    return f"<p><b>{len(names)} student{'s' if len(names) != 1 else ''}</b></p><ul class='lab-class-roster'>{items}</ul>"


def roster_and_answers(room: ClassRoom) -> tuple:
    """What the teacher's page refreshes after a push and on its timer: the list of students, the answers so far."""
    question = room.question
    return roster_html(room), answers_plot(question, True) if question else gr.skip()


def question_markdown(question: Question | None) -> str:
    if question is None:
        return ""
    verdict = ""
    if question.revealed and question.answer is not None:
        verdict = f"\n\n**Answer: {question.choices[question.answer]}**"
    return f"**Question {question.number}.** {question.text}{verdict}"


def differing(settings: dict[str, str], reference: dict[str, str]) -> str:
    """The settings of a run that differ from the reference run's, in words.

    >>> differing({"peak learning rate": "0.003", "steps": "1,000"}, {"peak learning rate": "0.01", "steps": "1,000"})
    'peak learning rate 0.003'
    """
    return ", ".join(f"{key} {value}" for key, value in settings.items() if reference.get(key, value) != value)


def classify_results(owner: str) -> tuple[str, float | None, float | None] | None:
    """(status, val accuracy, test accuracy) of a member's newest Classify run, while the server still has it."""
    view = latest_job(owner, "classify")
    if view is None:
        return None
    events = job_manager().poll(view.job_id, owner, 0).events
    finals = [event for event in events if getattr(event, "kind", "") == "accuracy" and event.final]
    final = finals[-1] if len(finals) > 1 else None  # the first final accuracy is the one before training
    return view.status, final.val_accuracy if final else None, final.test_accuracy if final else None


def board_views(room: ClassRoom):
    """Every member's Pretrain runs on one plot (each member's newest three, up to 12) and two leaderboards:
    Pretrain by val loss, with the settings that differ from the teacher's newest run, and Classify by
    validation accuracy."""
    members = [(room.teacher, "teacher")] + sorted(room.students.items(), key=lambda item: item[1].lower())
    curves, rows, classified = [], [], []
    for owner, name in members:
        for run in pretrain_tab.runs_of(owner)[-3:]:
            record, curve = run.record, run.record.curve
            curves.append(RunCurve(f"{name} · {record.label}", curve.steps, curve.tokens, curve.seconds,
                                   curve.train_loss, curve.evals, curve.running))
            rows.append((record.final_val, name, record))
        result = classify_results(owner)
        if result is not None:
            classified.append((name, *result))
    figure = compare_figure(curves[-12:], "step")
    teacher_runs = pretrain_tab.runs_of(room.teacher)
    reference = teacher_runs[-1].record.settings if teacher_runs else {}
    rows.sort(key=lambda row: (row[0] is None, row[0] if row[0] is not None else 0))
    body = "".join(
        f"<tr><td>{rank}</td><td>{html.escape(name)}</td><td>{html.escape(record.label)}</td>"
        f"<td>{'–' if val is None else f'{val:.3f}'}</td><td>{record.results()['tokens/s']}</td>"
        f"<td>{html.escape(differing(record.settings, reference)) or 'the same'}</td>"
        f"<td>{html.escape(record.status)}</td></tr>"
        for rank, (val, name, record) in enumerate(rows[:30], start=1))
    table = ("<p><b>Pretrain</b>, best validation loss first</p><table class='lab-class-board'><thead><tr><th>#</th>"
             "<th>who</th><th>run (switches)</th><th>val loss</th><th>tokens/s</th><th>settings unlike the teacher's"
             "</th><th>status</th></tr></thead><tbody>" + body + "</tbody></table>") if rows else (
        "<p class='lab-note'>The class's Pretrain runs appear here as soon as someone starts one.</p>")
    if classified:
        classified.sort(key=lambda row: -(row[2] if row[2] is not None else -1))

        def percent(value):
            return "–" if value is None else f"{100 * value:.1f}%"

        table += ("<p><b>Classify</b> (spam), best validation accuracy first</p><table class='lab-class-board'>"
                  "<thead><tr><th>who</th><th>val accuracy</th><th>test accuracy</th><th>status</th></tr></thead>"
                  "<tbody>" + "".join(f"<tr><td>{html.escape(name)}</td><td>{percent(val)}</td><td>{percent(test)}"
                                      f"</td><td>{html.escape(status)}</td></tr>"
                                      for name, status, val, test in classified[:30]) + "</tbody></table>")
    return figure, table


# ---------------------------------------------------------------------------------------------------------------
# The panel and its events
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ClassPanel:
    teacher: gr.BrowserState
    student: gr.BrowserState
    start_box: gr.Column
    teacher_key: gr.Textbox
    start: gr.Button
    teacher_box: gr.Column
    join_view: gr.HTML
    follow_me: gr.Checkbox
    lock: gr.Checkbox
    end: gr.Button
    roster: gr.HTML
    student_box: gr.Column
    code: gr.Textbox
    nickname: gr.Textbox
    join: gr.Button
    status: gr.Markdown
    following: gr.Checkbox
    question_box: gr.Accordion
    ask_prompt: gr.Textbox
    ask_next: gr.Button
    ask_text: gr.Textbox
    ask_choices: gr.Textbox
    ask_own: gr.Button
    reveal: gr.Button
    teacher_question: gr.Column
    question: gr.Markdown
    answer: gr.Radio
    send_answer: gr.Button
    answers: gr.Plot
    board: gr.Plot
    board_table: gr.HTML
    board_refresh: gr.Button
    teacher_timer: gr.Timer
    live: gr.Textbox  # the joined class's code, for the page script; empty: nothing to follow
    known: gr.State
    current_tab: gr.Textbox  # hidden: the teacher page's selected tab (its index, or its id)
    update: gr.Button  # hidden: the page script presses it when the class's version moved
    accordion: gr.Accordion
    answer_row: gr.Row
    board_box: gr.Accordion
    join_row: gr.Row
    push_button: gr.Button  # hidden: the page script presses it when the teacher's page changed


def build_panel() -> ClassPanel:
    """The Class mode accordion (above the tabs); ``wire`` connects it once the tabs exist."""
    teacher = gr.BrowserState(None, storage_key=TEACHER_KEY)
    student = gr.BrowserState(None, storage_key=STUDENT_KEY)
    with gr.Accordion("Class mode: lead a class, or join one", open=False, elem_id="class-panel") as panel:
        with gr.Column(visible=True) as start_box:
            gr.Markdown("**Teachers**: start a class and show its code: your students' pages then follow yours. "
                        "**Students**: type the code on the teacher's screen (or open the join link).")
            with gr.Row():
                teacher_key = gr.Textbox(label="teacher key (this server asks for one)", type="password",
                                         visible=bool(os.environ.get(TEACHER_KEY_ENV)), max_length=200, scale=2)
                start = gr.Button("Start a class", variant="primary", elem_id="class-start", scale=1)
        with gr.Column(visible=False) as teacher_box:
            join_view = gr.HTML(label="join code, link and QR code", elem_id="class-join")
            with gr.Row():
                follow_me = gr.Checkbox(True, label="Follow me: students see my tab, model and inputs",
                                        elem_id="class-follow-me")
                lock = gr.Checkbox(False, label="Lock students' settings to mine", elem_id="class-lock")
                end = gr.Button("End the class", size="sm", elem_id="class-end")
            roster = gr.HTML(label="students", elem_id="class-roster")
            # the page script (ui.common PAGE_JS) writes the selected tab's index here and presses the hidden
            # button when the teacher's tab or an input changed: a page that changes nothing sends nothing
            current_tab = gr.Textbox("0", label="the teacher's tab", elem_id="class-current-tab",
                                     elem_classes=["lab-hidden"], show_label=False, container=False)
            push_button = gr.Button("push", elem_id="class-push", elem_classes=["lab-hidden"])
        with gr.Column(visible=True) as student_box:
            with gr.Row() as join_row:  # hidden once this page joined: the status line says which class
                code = gr.Textbox(label="class code", max_length=12, scale=1, elem_id="class-code-input")
                nickname = gr.Textbox(label="your nickname (no account, just a name)", max_length=MAX_NICKNAME,
                                      scale=2, elem_id="class-nickname")
                join = gr.Button("Join", variant="primary", scale=1, elem_id="class-join-button")
            status = gr.Markdown(label="class status", elem_id="class-status")
            following = gr.Checkbox(True, label="Follow the teacher (untick to explore on my own)",
                                    elem_id="class-following")
            # the page script (ui.common PAGE_JS) reads the class code here, waits on GET /class_version/CODE
            # for the next version and presses the hidden button when it moved
            live = gr.Textbox("", label="joined class code", elem_id="class-live", elem_classes=["lab-hidden"], interactive=False,
                              show_label=False, container=False)
            update = gr.Button("update", elem_id="class-update", elem_classes=["lab-hidden"])
        with gr.Accordion("Predict, then reveal", open=True, visible=False, elem_id="class-question") as question_box:
            with gr.Column(visible=False) as teacher_question:
                with gr.Row():
                    ask_prompt = gr.Textbox("Every effort moves you", label="prompt: which token comes next?",
                                            max_length=MAX_QUESTION, scale=3)
                    ask_next = gr.Button("Ask: which token comes next?", scale=1, elem_id="class-ask-next")
                with gr.Row():
                    ask_text = gr.Textbox(label="or your own question", max_length=MAX_QUESTION, scale=2)
                    ask_choices = gr.Textbox(label="choices, separated by | (mark the right one with *)",
                                             placeholder="lower | *higher | about the same", max_length=400, scale=2)
                    ask_own = gr.Button("Ask it", scale=1)
                reveal_button = gr.Button("Reveal the answer", elem_id="class-reveal")
            question = gr.Markdown(label="question", elem_id="class-question-text")
            with gr.Row() as answer_row:
                answer = gr.Radio([], label="your answer", scale=3, elem_id="class-answer")
                send_answer = gr.Button("Answer", scale=1, elem_id="class-send-answer")
            answers = gr.Plot(answers_figure(None, False), label="the class's answers", show_label=False, visible=False,
                              elem_id="class-answers")
        with gr.Accordion("Class board: everyone's Pretrain runs", open=False, visible=False,
                          elem_id="class-board") as board_box:
            board_refresh = gr.Button("↻ Refresh", size="sm")
            board = gr.Plot(show_label=False, elem_id="class-board-plot")
            board_table = gr.HTML(elem_id="class-board-table")
    panel_parts = ClassPanel(teacher, student, start_box, teacher_key, start, teacher_box, join_view, follow_me, lock,
                             end, roster, student_box, code, nickname, join, status, following, question_box,
                             ask_prompt, ask_next, ask_text, ask_choices, ask_own, reveal_button, teacher_question,
                             question, answer, send_answer, answers, board, board_table, board_refresh,
                             gr.Timer(TEACHER_PUSH_S, active=False), live, gr.State(None), current_tab,
                             update, panel, answer_row, board_box, join_row, push_button)
    return panel_parts


def _inputs(tabs_followed: list[FollowedTab]) -> list[tuple[str, str, gr.components.Component]]:
    return [(tab.tab_id, key, component) for tab in tabs_followed for key, component in tab.inputs.items()]


def wire(panel: ClassPanel, tabs: gr.Tabs, tab_ids: tuple[str, ...], model_choice: gr.Dropdown,
         browser_id: gr.BrowserState) -> None:
    """Connect the panel to the tabs built since (their followed inputs) and to the page's load."""
    root = gr.context.Context.root_block
    tabs_followed = followed_tabs(root)
    flat = _inputs(tabs_followed)
    components = [component for _, _, component in flat]
    p = panel

    # what the page shows: the teacher's controls, or the student's (the start row, the join row), and the parts
    # both see (the question, the board), with the timer of each side
    teacher_views = [p.start_box, p.teacher_box, p.join_view, p.roster, p.question_box, p.teacher_question,
                     p.board_box, p.teacher_timer, p.student_box, p.answer_row]
    student_views = [p.code, p.nickname, p.status, p.live, p.join_row]

    def as_teacher(room: ClassRoom, request) -> tuple:
        return (gr.Column(visible=False), gr.Column(visible=True), join_html(room.code, join_link(request, room.code)),
                roster_html(room), gr.Accordion(visible=True), gr.Column(visible=True), gr.Accordion(visible=True),
                gr.Timer(active=True), gr.Column(visible=False), gr.Row(visible=False))

    def not_teacher(start_visible: bool = True, joined: bool = False) -> tuple:
        return (gr.Column(visible=start_visible), gr.Column(visible=False), "", "", gr.Accordion(visible=joined),
                gr.Column(visible=False), gr.Accordion(visible=joined), gr.Timer(active=False),
                gr.Column(visible=True), gr.Row(visible=False))  # the answer row: shown with a question

    def on_load(teacher_state, student_state, browser, request: gr.Request):
        """Reattach after a refresh: the teacher's class, or the student's; ?class=CODE opens the join form."""
        owner = _owner_or_none(browser, request)
        linked = (request.query_params.get("class") or "").strip() if request is not None else ""
        tab = (request.query_params.get("tab") or "").strip().lower() if request is not None else ""
        current = tab if tab in tab_ids else tab_ids[0]
        if owner is not None and isinstance(teacher_state, dict):
            try:
                room = teacher_class(teacher_state, owner)
                return (gr.Accordion(open=True), *as_teacher(room, request), *(gr.skip(),) * 5, current)
            except (PermissionError, ValueError):
                pass
        code = linked or (student_state.get("code") if isinstance(student_state, dict) else "") or ""
        if not code:
            return (gr.skip(), *(gr.skip(),) * len(teacher_views), *(gr.skip(),) * 5, current)
        try:
            room = find_class(code)
        except ValueError as error:
            return (gr.Accordion(open=True), *not_teacher(False), str(code)[:12], gr.skip(), f"⚠ {error}", "",
                    gr.Row(visible=True), current)
        joined = owner in room.students
        status = (f"You are in **class {room.code}** as **{html.escape(room.students[owner])}**."
                  if joined else f"Class **{room.code}**: type a nickname and press **Join**.")
        nickname = room.students[owner] if joined else gr.skip()
        return (gr.Accordion(open=True), *not_teacher(False, joined), room.code, nickname, status,
                live_value(room, owner) if joined else "", gr.Row(visible=not joined), current)

    root.load(friendly(on_load), [p.teacher, p.student, browser_id],
              [p.accordion, *teacher_views, *student_views, p.current_tab], api_name=False)

    def start(teacher_key, browser, request: gr.Request = None):
        """Start a class led by this page; the code, link and QR code appear."""
        room, token = start_class(owner_of(browser, request), teacher_key)
        return {"code": room.code, "token": token}, *as_teacher(room, request)

    p.start.click(friendly(start), [p.teacher_key, browser_id], [p.teacher, *teacher_views], api_name="class_start", api_visibility="undocumented",
                  concurrency_limit=4, concurrency_id="class")

    def end(teacher_state, browser, request: gr.Request = None):
        """End the class: students' pages say so and stop following."""
        room = teacher_class(teacher_state, owner_of(browser, request))
        with _lock:
            _classes.pop(room.code, None)
        BELL.ring(room.code)  # following pages hear at once that the class ended
        return None, *not_teacher()

    p.end.click(friendly(end), [p.teacher, browser_id], [p.teacher, *teacher_views], api_name="class_end", api_visibility="undocumented",
                concurrency_limit=4, concurrency_id="class")

    def teacher_tab(tab) -> str | None:
        """The tab the teacher's page shows, from its index ("2", as the page script writes it) or its id."""
        if isinstance(tab, str) and tab.isdigit() and int(tab) < len(tab_ids):
            return tab_ids[int(tab)]
        return tab if tab in tab_ids else None

    def push(request: gr.Request, teacher_state, browser, tab, model, follow_me, lock, *values):
        """The teacher page's state when it changed (and every TEACHER_PUSH_S seconds): its tab, model and
        followed inputs (api: class_push); returns the roster and the answers so far."""
        room = teacher_class(teacher_state, owner_of(browser, request))
        by_tab: dict[str, dict] = {}
        for (tab_id, key, _), value in zip(flat, values):
            by_tab.setdefault(tab_id, {})[key] = value
        push_view(room, teacher_tab(tab) or room.tab, model if isinstance(model, str) else None,
                  by_tab, bool(follow_me), bool(lock))
        return roster_and_answers(room)

    push_inputs = [p.teacher, browser_id, p.current_tab, model_choice, p.follow_me, p.lock, *components]
    p.push_button.click(friendly(push), push_inputs, [p.roster, p.answers], api_name="class_push",
                        api_visibility="undocumented", show_progress="hidden", queue=False)

    def roster(request: gr.Request, teacher_state, browser):
        """The teacher page's timer (every TEACHER_PUSH_S seconds): the list of students and the answers so far
        (api: class_roster); what the page shows goes out with the pushes, when it changes."""
        return roster_and_answers(teacher_class(teacher_state, owner_of(browser, request)))

    p.teacher_timer.tick(friendly(roster), [p.teacher, browser_id], [p.roster, p.answers], api_name="class_roster",
                         api_visibility="undocumented", show_progress="hidden", queue=False)

    # A following page's script waits on GET /class_version/CODE (add_routes: no Gradio event) and, when the class
    # moved, presses the hidden update button of the teacher's tab (#class-update-TAB; #class-update for a tab
    # nobody follows). That one event brings everything: the teacher's tab and model, that tab's inputs when they
    # changed, and the tab's views drawn with them (the tab's own handlers, called here), so a following page costs
    # the server one event per change, not one for the inputs and one more for each view they redraw.
    status_parts = [p.status, p.following, p.question, p.answer, p.answers, p.known, p.live, p.answer_row]

    def class_update(student_state, browser, known, following, request) -> tuple[ClassRoom | None, dict, tuple]:
        """What every update shares: (the class or None, the page's new ``known``, the status parts' values)."""
        owner = owner_of(browser, request)
        code = student_state.get("code") if isinstance(student_state, dict) else None
        try:
            room = find_class(code)
        except ValueError:
            return None, {}, ("The class has ended (or this server restarted): reload the page to join another.",
                              gr.skip(), gr.skip(), gr.skip(),
                              gr.skip(), None, "", gr.Row(visible=False))
        if owner not in room.students:
            return None, {}, ("Join the class again: type your nickname and press Join.", gr.skip(), gr.skip(),
                              gr.skip(), gr.skip(), None, "", gr.Row(visible=False))
        room.seen[owner] = time.monotonic()
        known = dict(known) if isinstance(known, dict) else {}
        follows = room.following and (bool(following) or room.locked)
        question = room.question
        q_key = [question.number, question.revealed] if question else []
        q_changed = known.get("q", []) != q_key
        status = f"You are in **class {room.code}** as **{html.escape(room.students[owner])}** · " + (
            "🔒 your teacher has locked the settings: your page shows theirs." if room.locked else
            "following the teacher." if follows else "exploring on your own (tick *Follow the teacher* to rejoin).")
        known.update(v=room.version, follows=follows, q=q_key, tabs=known.get("tabs", {}) if follows else {},
                     model=known.get("model") if follows else None)
        parts = (status, gr.Checkbox(interactive=not room.locked),
                 question_markdown(question) if q_changed else gr.skip(),
                 gr.Radio(choices=list(question.choices), value=None) if q_changed and question and not
                 question.revealed else gr.skip(),
                 answers_plot(question, True) if q_changed and question and question.revealed else (
                     gr.Plot(visible=False) if q_changed else gr.skip()),
                 known, gr.skip(),
                 gr.Row(visible=bool(question and not question.revealed)) if q_changed else gr.skip())  # answer row
        return room, known, parts

    def tab_and_model(room: ClassRoom | None, known: dict) -> tuple:
        if room is None or not known.get("follows"):
            return gr.skip(), gr.skip()
        model_out = gr.skip()
        if room.model in models.choice_labels() and known.get("model") != room.model:
            model_out, known["model"] = gr.update(value=room.model), room.model
        return gr.Tabs(selected=room.tab), model_out

    def poll(student_state, browser, known, following, request: gr.Request = None):
        """A student page's update after the class changed (api: class_poll): the teacher's tab and model, the
        status and the question (a followed tab's inputs and views come with its own update)."""
        room, known, parts = class_update(student_state, browser, known, following, request)
        return (*tab_and_model(room, known), *parts)

    p.update.click(friendly(poll), [p.student, browser_id, p.known, p.following], [tabs, model_choice, *status_parts],
                   api_name="class_poll", api_visibility="undocumented", show_progress="hidden", concurrency_limit=None)

    for tab in tabs_followed:
        wire_tab_update(tab, p, tabs, model_choice, browser_id, status_parts, class_update, tab_and_model)

    def join(code, nickname, browser, request: gr.Request = None):
        """Join a class with a nickname; the page starts following the teacher (its status line and the class's
        question come with the join: the page's script asks for them again only when they move)."""
        owner = owner_of(browser, request)
        room = join_class(code, nickname, owner)
        student_state = {"code": room.code, "nickname": room.students[owner]}
        _, _, parts = class_update(student_state, browser, None, True, request)
        *before_live, _, answer_row = parts
        return (student_state, *before_live, live_value(room, owner, status=True), answer_row, gr.Accordion(visible=True),
                gr.Accordion(visible=True), gr.Column(visible=False), gr.Row(visible=False))

    joined_views = [p.student, *status_parts, p.question_box, p.board_box, p.start_box, p.join_row]
    p.join.click(friendly(join), [p.code, p.nickname, browser_id], joined_views, api_name="class_join",
                 api_visibility="undocumented", concurrency_limit=4, concurrency_id="class")
    p.nickname.submit(friendly(join), [p.code, p.nickname, browser_id], joined_views, api_name=False,
                      concurrency_limit=4, concurrency_id="class")

    # Ticking "Follow the teacher" again takes over the teacher's page at once: the script presses the update of
    # the teacher's tab (the class's version has not moved, so it would not on its own).
    p.following.change(None, None, None, js="() => window.labClassUpdate && window.labClassUpdate()")

    def send_answer(choice, student_state, browser, request: gr.Request = None):
        """A student's answer to the class's question (it can be changed until the reveal)."""
        owner = owner_of(browser, request)
        room = find_class(student_state.get("code") if isinstance(student_state, dict) else None)
        answer_question(room, owner, choice)
        return f"You are in **class {room.code}** as **{html.escape(room.students[owner])}** · answer sent: " \
               f"**{choice}** (you can change it until the reveal)."

    p.send_answer.click(friendly(send_answer), [p.answer, p.student, browser_id], p.status, api_name="class_answer", api_visibility="undocumented",
                        concurrency_limit=None)

    def ask_next(teacher_state, browser, prompt, model, request: gr.Request = None):
        """Ask the class which token the model puts next after the prompt."""
        room = teacher_class(teacher_state, owner_of(browser, request))
        question = next_token_question(model, prompt)
        ask(room, question)
        return question_markdown(question), answers_plot(question, False)

    def ask_own_question(teacher_state, browser, text, choices, request: gr.Request = None):
        """Ask the class a question of your own (choices separated by |, the right one marked with *)."""
        room = teacher_class(teacher_state, owner_of(browser, request))
        question = own_question(text, choices)
        ask(room, question)
        return question_markdown(question), answers_plot(question, False)

    def reveal_answer(teacher_state, browser, request: gr.Request = None):
        """Show everyone the class's answers and the right one."""
        room = teacher_class(teacher_state, owner_of(browser, request))
        reveal(room)
        return question_markdown(room.question), answers_plot(room.question, True)

    p.ask_next.click(friendly(ask_next), [p.teacher, browser_id, p.ask_prompt, model_choice],
                     [p.question, p.answers], api_name="class_ask", api_visibility="undocumented", concurrency_limit=4, concurrency_id="class")
    p.ask_own.click(friendly(ask_own_question), [p.teacher, browser_id, p.ask_text, p.ask_choices],
                    [p.question, p.answers], api_name="class_ask_own", api_visibility="undocumented", concurrency_limit=4, concurrency_id="class")
    p.reveal.click(friendly(reveal_answer), [p.teacher, browser_id], [p.question, p.answers],
                   api_name="class_reveal", api_visibility="undocumented", concurrency_limit=4, concurrency_id="class")

    def refresh_board(teacher_state, student_state, browser, request: gr.Request = None):
        """The class board: every member's Pretrain runs and the leaderboard."""
        owner = owner_of(browser, request)
        try:
            room = teacher_class(teacher_state, owner)
        except (PermissionError, ValueError):
            room = find_class(student_state.get("code") if isinstance(student_state, dict) else None)
            if owner not in room.students:
                raise PermissionError(f"Join class {room.code} first to see its board.") from None
        return board_views(room)

    p.board_refresh.click(friendly(refresh_board), [p.teacher, p.student, browser_id], [p.board, p.board_table],
                          api_name="class_board", api_visibility="undocumented", concurrency_limit=4, concurrency_id="class")
    board_timer = gr.Timer(BOARD_S, active=False)
    p.board_box.expand(friendly(refresh_board), [p.teacher, p.student, browser_id], [p.board, p.board_table],
                       api_name=False, concurrency_limit=4, concurrency_id="class").then(
        lambda: gr.Timer(active=True), None, board_timer, api_name=False, queue=False)
    p.board_box.collapse(lambda: gr.Timer(active=False), None, board_timer, api_name=False, queue=False)
    board_timer.tick(friendly(refresh_board), [p.teacher, p.student, browser_id], [p.board, p.board_table],
                     api_name=False, show_progress="hidden", concurrency_limit=4, concurrency_id="class")


def _unique(components) -> list:
    seen, unique = set(), []
    for component in components:
        if id(component) not in seen:
            seen.add(id(component))
            unique.append(component)
    return unique


def _value(update, old):
    """The value a view's output gives the next view's input: an update's "value" if it has one."""
    if isinstance(update, dict) and update.get("__type__") == "update":
        return update.get("value", old)
    return update


def wire_tab_update(tab: FollowedTab, p: ClassPanel, tabs: gr.Tabs, model_choice: gr.Dropdown,
                    browser_id: gr.BrowserState, status_parts: list, class_update, tab_and_model) -> None:
    """The hidden buttons of one followed tab: its update (#class-update-TAB, api: class_poll_TAB), a Gradio event
    that brings a following page the teacher's values of the tab's inputs when they changed since the page last
    took them, and the tab's views drawn with them by the tab's own handlers, one after the other (a later view
    reads what an earlier one made); and, for a tab whose views need no page state, its apply button
    (#class-apply-TAB), which sets the same from ``GET /class_view/CODE/TAB`` in the browser, without an event."""
    keys, inputs = list(tab.inputs), list(tab.inputs.values())
    view_outputs = _unique([out for view in tab.views for out in view["outputs"] if out not in inputs])
    extra_inputs = _unique([component for view in tab.views for component in view["inputs"]
                            if component not in inputs and component not in view_outputs])
    skip_all = (gr.skip(),) * (len(inputs) + len(view_outputs))

    def draw(room: ClassRoom, extras) -> tuple:
        """The tab's inputs set to the teacher's values (disabled when locked) and its views drawn with them."""
        with _lock:
            values, interactive, model = dict(room.values[tab.tab_id]), not room.locked, room.model
        input_updates = [gr.update(value=values[key], interactive=interactive) if key in values else
                         gr.update(interactive=interactive) for key in keys]
        current = {id(component): values.get(key) for key, component in zip(keys, inputs)}
        current.update({id(component): value for component, value in zip(extra_inputs, extras)})
        if model in models.choice_labels():
            current[id(model_choice)] = model  # the views draw with the teacher's model, as the menu now shows
        drawn: dict[int, object] = {}
        for view in tab.views:
            results = view["fn"](*(current.get(id(component)) for component in view["inputs"]))
            results = results if isinstance(results, tuple | list) and len(view["outputs"]) > 1 else (results,)
            for component, result in zip(view["outputs"], results):
                drawn[id(component)] = result
                current[id(component)] = _value(result, current.get(id(component)))
        view_updates = [drawn.get(id(component), gr.skip()) for component in view_outputs]
        return (*input_updates, *view_updates)

    def update(request: gr.Request, student_state, browser, known, following, *extras):
        room, known, parts = class_update(student_state, browser, known, following, request)
        tab_out, model_out = tab_and_model(room, known)
        seen = [room.tab_versions.get(tab.tab_id), room.locked] if room is not None else None
        if room is None or not known.get("follows") or tab.tab_id not in room.values or \
                known["tabs"].get(tab.tab_id) == seen:
            return (tab_out, model_out, *skip_all, *parts)
        known["tabs"][tab.tab_id] = seen
        return (tab_out, model_out, *draw(room, extras), *parts)

    button = gr.Button("update", elem_id=f"class-update-{tab.tab_id}", elem_classes=["lab-hidden"])
    button.click(friendly(update), [p.student, browser_id, p.known, p.following, *extra_inputs],
                 [tabs, model_choice, *inputs, *view_outputs, *status_parts], api_name=f"class_poll_{tab.tab_id}",
                 api_visibility="undocumented", show_progress="hidden", concurrency_limit=None)
    if any(isinstance(component, gr.State) for component in view_outputs):
        return  # a browser cannot set a gr.State: this tab's views come with its Gradio update only

    def class_view(room: ClassRoom) -> tuple:
        """The apply button's outputs for every following page of ``room``: the extra inputs at their defaults."""
        model = gr.update(value=room.model) if room.model in models.choice_labels() else gr.skip()
        return (gr.Tabs(selected=room.tab), model, *draw(room, [component.value for component in extra_inputs]))

    # The page script (ui.common PAGE_JS) fetches GET /class_view/CODE/TAB into window.labClassView and presses this
    # button; its outputs are set in the browser from that JSON, as if an event had returned them.
    apply = gr.Button("apply", elem_id=f"class-apply-{tab.tab_id}", elem_classes=["lab-hidden"])
    applied = apply.click(None, None, [tabs, model_choice, *inputs, *view_outputs], api_name=False,
                          js=f"() => window.labClassView['{tab.tab_id}']", show_progress="hidden")
    root = gr.context.Context.root_block
    _tab_views[tab.tab_id] = TabView(root, root.fns[applied["id"]], class_view)


def _owner_or_none(browser, request) -> str | None:
    try:
        return owner_of(browser, request)
    except (PermissionError, ValueError):
        return None
