"""Class mode: codes, nicknames and questions checked; through the API a teacher leads and students follow, and a
student's session cannot change the class; in Chromium a student's page follows the teacher's tab."""

from __future__ import annotations

import json
import re
import threading
import time
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from gradio_client.exceptions import AppError

from ui import classroom, runs

STATUS, FOLLOWING, ANSWER = -6, -5, -3  # /class_poll's outputs from the end: ..., answer, the answers' plot, timer
FOLLOW_S = 5.0  # the bound: a student's page shows the teacher's tab within 5 s of each change


# ---------------------------------------------------------------- units
def test_codes_are_short_unambiguous_and_checked():
    codes = {classroom.new_code() for _ in range(200)}
    assert all(len(code) == 5 and not set(code) & set("01OI") for code in codes)
    assert classroom.clean_code(" k7qxm ") == "K7QXM"
    with pytest.raises(ValueError, match="K0QXM is not a class code: codes use the letters and digits"):
        classroom.clean_code("k0qxm")
    with pytest.raises(ValueError, match="A class code is 5 letters and digits"):
        classroom.clean_code("x" * 40)
    with pytest.raises(ValueError, match="There is no class ZZZZZ on this server"):
        classroom.find_class("zzzzz")


@pytest.mark.parametrize("nickname, message", [
    ("", "Type a nickname first: it is how your teacher sees you"),
    ("\u200b\n\t", "Type a nickname first"),
    ("x" * 25, "A nickname has at most 24 characters (this one has 25)."),
    (None, "Type a nickname first."),
])
def test_nicknames_are_bounded(nickname, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classroom.clean_nickname(nickname)


def test_a_class_needs_the_servers_teacher_key_when_it_has_one(monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, "staff-only")
    with pytest.raises(PermissionError, match="That is not this server's teacher key"):
        classroom.start_class("browser-t1", "guess")
    room, token = classroom.start_class("browser-t1", "staff-only")
    assert len(room.code) == 5 and len(token) >= 24 and room.token_hash != token


def test_joining_pushing_and_versions():
    room, token = classroom.start_class("browser-teacher")
    teacher_state = {"code": room.code, "token": token}
    with pytest.raises(ValueError, match="This page is the teacher's"):
        classroom.join_class(room.code, "Teach", "browser-teacher")
    classroom.join_class(room.code.lower(), "  Ada ", "browser-ada")
    with pytest.raises(ValueError, match="Someone in the class is already called ada"):
        classroom.join_class(room.code, "ada", "browser-other")
    assert room.students == {"browser-ada": "Ada"}
    with pytest.raises(PermissionError, match=f"Only the teacher who started class {room.code} can change it"):
        classroom.teacher_class(teacher_state, "browser-ada")
    with pytest.raises(PermissionError, match=f"Only the teacher who started class {room.code} can change it"):
        classroom.teacher_class({"code": room.code, "token": "a guess"}, "browser-teacher")
    assert classroom.teacher_class(teacher_state, "browser-teacher") is room
    version = room.version
    classroom.push_view(room, "inside", None, {"inside": {"text": "Hello"}}, True, False)
    assert room.version == version + 1 and room.tab_versions == {"inside": 1}
    classroom.push_view(room, "inside", None, {"inside": {"text": "Hello"}}, True, False)  # nothing new
    assert room.version == version + 1
    classroom.push_view(room, "inside", None, {"inside": {"text": "x" * 10_000}}, True, False)
    assert len(room.values["inside"]["text"]) == classroom.MAX_VALUE_CHARS and room.tab_versions == {"inside": 2}


def test_own_questions_and_answers():
    question = classroom.own_question("What does the loss do  without warm-up?", "lower | *higher | same")
    assert (question.choices, question.answer) == (["lower", "higher", "same"], 1)
    with pytest.raises(ValueError, match=r"Give 2 to 6 choices separated by \|"):
        classroom.own_question("Why?", "only one")
    assert classroom.own_question("<b>?</b>", "<i>a</i> | b").choices == ["&lt;i&gt;a&lt;/i&gt;", "b"]
    room, _ = classroom.start_class("browser-teacher-q")
    classroom.join_class(room.code, "Bo", "browser-bo")
    classroom.ask(room, question)
    with pytest.raises(ValueError, match="Join the class first"):
        classroom.answer_question(room, "browser-stranger", "lower")
    with pytest.raises(ValueError, match="Pick one of the choices first"):
        classroom.answer_question(room, "browser-bo", "sideways")
    classroom.answer_question(room, "browser-bo", "lower")
    classroom.answer_question(room, "browser-bo", "higher")  # changed before the reveal
    assert question.counts() == [0, 1, 0]
    classroom.reveal(room)
    with pytest.raises(ValueError, match="The answer has been revealed"):
        classroom.answer_question(room, "browser-bo", "lower")


def test_the_next_token_question_has_the_models_top_token_among_five():
    question = classroom.next_token_question(classroom.models.DEFAULT_CHOICE, "ROMEO:", seed=3)
    assert len(question.choices) == 5 and question.answer is not None
    percents = [float(detail.split()[1].rstrip("%")) for detail in question.detail]
    print(list(zip(question.choices, percents)))
    assert percents[question.answer] == max(percents)


# ---------------------------------------------------------------- through the API
def push_args(client, teacher_state, browser, **changes):
    """/class_push's arguments: the teacher page's state and every followed input at its default."""
    info = json.loads(urlopen(f"{client.src.rstrip('/')}/gradio_api/info?all_endpoints=true").read())
    parameters = info["named_endpoints"]["/class_push"]["parameters"]  # class mode's endpoints are undocumented
    values = [parameter.get("parameter_default") for parameter in parameters]
    labels = [parameter["label"] for parameter in parameters]
    values[0], values[1] = teacher_state, browser
    for label, value in changes.items():
        values[labels.index(label.replace("_", " "))] = value
    return values


@pytest.mark.app
def test_a_student_follows_the_teacher_and_cannot_change_the_class(client, app_url):
    teacher, student, other = runs.new_browser_id(), runs.new_browser_id(), runs.new_browser_id()
    teacher_state, join_page, *_ = client.predict("", teacher, api_name="/class_start")
    code = teacher_state["code"]
    assert f"/?class={code}</div>" in join_page and "<svg" in join_page
    joined = client.predict(code, "Ada", student, api_name="/class_join")
    student_state, status = joined[0], joined[1]
    assert status == f"You are in **class {code}** as **Ada** · following the teacher."  # the status line, at once
    live = next(value for value in joined if isinstance(value, str) and value.startswith(f"{code} "))
    print("class_join:", [str(value)[:50] for value in joined])
    assert live.endswith(f" {classroom.find_class(code).status_version}")  # the page need not ask for its status
    # the page's script reads "CODE seat": its asks name the seat, which keeps Ada present in the teacher's list
    room, (live_code, seat, _) = classroom.find_class(code), live.split()
    assert live_code == code and list(room.seats) == [seat]
    room.seen.clear()
    urlopen(f"{app_url}class_version/{code}?seat=not-a-seat").read()
    assert room.seen == {}
    urlopen(f"{app_url}class_version/{code}?seat={seat}").read()
    assert list(room.seen) == [room.seats[seat]] and "class=away" not in classroom.roster_html(room)
    room.seen[room.seats[seat]] -= classroom.AWAY_S + 1
    assert "<li class=away>Ada</li>" in classroom.roster_html(room)
    version = int(urlopen(f"{app_url}class_version/{code}").read().split()[0])
    client.predict(*push_args(client, teacher_state, teacher, Text="Teacher's sentence"), api_name="/class_push")
    # the page's cheap question: the class's version, the teacher's tab, the status line's version, Follow me
    assert urlopen(f"{app_url}class_version/{code}").read() == f"{version + 1} tokenizer 1 follow".encode()
    assert urlopen(f"{app_url}class_version/ZZZZZ").read() == b"-1"  # no such class (any more)
    assert classroom.find_class(code).values["tokenizer"]["text"] == "Teacher's sentence"
    first = client.predict(student_state, student, True, api_name="/class_poll")
    assert "following the teacher." in first[STATUS]
    # each tab's own update brings that tab's inputs and its views drawn with them in the same event
    update = client.predict(student_state, student, True, api_name="/class_poll_tokenizer")
    assert update[1] == {"__type__": "update", "value": "Teacher's sentence", "interactive": True}
    assert "·sentence</span>" in update[5] and update[6].startswith("**")  # the tokens and their counts
    # ... and the same without a Gradio event: the view the page applies, drawn once for the class
    view = json.loads(urlopen(f"{app_url}class_view/{code}/tokenizer").read())
    assert view["key"].startswith(f"{classroom.find_class(code).tab_versions['tokenizer']}:False:")
    assert view["data"][0] == {"selected": "tokenizer", "__type__": "update"}
    assert view["data"][2] == {"value": "Teacher's sentence", "interactive": True, "__type__": "update"}
    assert view["data"][4:6] == [{"value": 8, "interactive": True, "__type__": "update"},  # the windows' sliders
                                 {"value": 4, "interactive": True, "__type__": "update"}]
    assert view["data"][6:8] == list(update[5:7])  # the tokens and the counts, as the update drew them
    again = client.predict(student_state, student, True, api_name="/class_poll_tokenizer")
    script = client.predict(student_state, None, True, api_name="/class_poll_tokenizer")  # a script's session
    assert "Join the class again" in script[STATUS]  # (it is not the browser that joined)
    assert again[1] == {"__type__": "update"} and "following the teacher." in again[STATUS]  # nothing new: skipped
    client.predict(*push_args(client, teacher_state, teacher, **{"Sentence (press Enter to draw it)": "one two three"}),
                   api_name="/class_push")
    ladder = client.predict(student_state, student, True, api_name="/class_poll_attention")
    print("class_poll_attention:", [str(value)[:70] for value in ladder[:8]])
    assert ladder[1]["value"] == "one two three" and "3 tokens" in ladder[7] and ladder[10]["type"] == "plotly"
    view = json.loads(urlopen(f"{app_url}class_view/{code}/attention").read())["data"]
    assert view[2]["value"] == "one two three" and view[8] == ladder[7]
    assert json.loads(view[11]["plot"]) == json.loads(ladder[10]["plot"])  # the first rung's matrices
    # Inside GPT's view carries what the page shows (the head sliders read its weights from the server's cache)
    inside = json.loads(urlopen(f"{app_url}class_view/{code}/inside").read())["data"]
    text = classroom.find_class(code).values["inside"]["text"]
    assert {"model": classroom.find_class(code).model, "text": text} in inside and inside[2]["value"] == text
    for missing in (f"class_view/{code}/bogus", "class_view/ZZZZZ/attention"):
        with pytest.raises(HTTPError, match="404"):
            urlopen(f"{app_url}{missing}")
    # a student's session, with the teacher's state copied or guessed, cannot change the class
    for api_name, args in [("/class_push", push_args(client, teacher_state, student, Text="hijack")),
                           ("/class_ask_own", [teacher_state, student, "Q?", "a | b"]),
                           ("/class_reveal", [teacher_state, student]),
                           ("/class_end", [teacher_state, student]),
                           ("/class_roster", [teacher_state, student]),
                           ("/class_push", push_args(client, {"code": code, "token": "guess"}, teacher))]:
        with pytest.raises(AppError, match=f"Only the teacher who started class {code} can change it"):
            client.predict(*args, api_name=api_name)
    roster, _ = client.predict(teacher_state, teacher, api_name="/class_roster")  # the teacher page's timer
    assert ">Ada<" in roster and "1 student" in roster
    with pytest.raises(AppError, match="Join class .* first to see its board"):
        client.predict(None, {"code": code}, other, api_name="/class_board")
    # a detached student is left alone; the lock brings everyone back and disables their controls
    client.predict(*push_args(client, teacher_state, teacher, Text="Second sentence"), api_name="/class_push")
    detached = client.predict(student_state, student, False, api_name="/class_poll")
    assert "exploring on your own" in detached[STATUS] and detached[FOLLOWING]["interactive"] is True
    client.predict(*push_args(client, teacher_state, teacher, Text="Locked sentence",
                              **{"Lock students' settings to mine": True}), api_name="/class_push")
    locked = client.predict(student_state, student, False, api_name="/class_poll")
    assert "locked the settings" in locked[STATUS] and locked[FOLLOWING]["interactive"] is False


@pytest.mark.app
def test_a_following_page_waits_for_the_next_version(client, app_url, monkeypatch):
    monkeypatch.setattr(classroom, "WAIT_S", 5.0)
    teacher = runs.new_browser_id()
    teacher_state, *_ = client.predict("", teacher, api_name="/class_start")
    code = teacher_state["code"]
    version = int(urlopen(f"{app_url}class_version/{code}").read().split()[0])

    def ask(after: str) -> tuple[bytes, float]:
        start = time.perf_counter()
        answer = urlopen(f"{app_url}class_version/{code}?after={after}", timeout=10).read()
        return answer.split()[0], time.perf_counter() - start

    assert ask(str(version - 1))[0] == str(version).encode()  # already moved on: answered at once
    assert ask("x" * 40)[0] == str(version).encode()  # not a version: answered at once
    later = threading.Timer(0.5, lambda: client.predict(*push_args(client, teacher_state, teacher, Text="Next one"),
                                                         api_name="/class_push"))
    later.start()
    answer, seconds = ask(str(version))
    later.join()
    print(f"woken after {seconds:.2f} s")
    assert answer == str(version + 1).encode() and 0.4 < seconds < 4.0  # held until the push, not the 5 s wait
    monkeypatch.setattr(classroom, "WAIT_S", 0.3)
    answer, seconds = ask(str(version + 1))
    assert answer == str(version + 1).encode() and 0.25 < seconds < 3.0  # nothing new: the same version
    ender = threading.Timer(0.3, lambda: client.predict(teacher_state, teacher, api_name="/class_end"))
    monkeypatch.setattr(classroom, "WAIT_S", 5.0)
    ender.start()
    answer, seconds = ask(str(version + 1))
    ender.join()
    assert answer == b"-1" and seconds < 4.0  # the class ended: the waiting pages hear it at once


@pytest.mark.app
def test_predict_then_reveal_through_the_api(client):
    teacher, student = runs.new_browser_id(), runs.new_browser_id()
    teacher_state, *_ = client.predict("", teacher, api_name="/class_start")
    student_state, *_ = client.predict(teacher_state["code"], "Bo", student, api_name="/class_join")
    text, _ = client.predict(teacher_state, teacher, "Without warm-up the loss is", "lower | *higher",
                             api_name="/class_ask_own")
    assert text.startswith("**Question 1.** Without warm-up the loss is")
    polled = client.predict(student_state, student, True, api_name="/class_poll")
    assert [choice[0] for choice in polled[ANSWER]["choices"]] == ["lower", "higher"]
    status = client.predict("higher", student_state, student, api_name="/class_answer")
    assert "answer sent: **higher**" in status
    text, figure = client.predict(teacher_state, teacher, api_name="/class_reveal")
    assert text.endswith("**Answer: higher**") and '"1 ✓"' in figure.get("value", figure)["plot"]  # the plot, shown
    with pytest.raises(AppError, match="The answer has been revealed"):
        client.predict("lower", student_state, student, api_name="/class_answer")


# ---------------------------------------------------------------- in the browser
def selected_tab(page) -> str:
    return page.locator("button[role=tab][aria-selected=true]").first.inner_text().strip()


def wait_for_tab(page, name: str, timeout: float = FOLLOW_S) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if selected_tab(page) == name:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"the student's page still shows {selected_tab(page)!r}, not {name!r}, after {timeout} s")


@pytest.mark.browser
def test_a_student_page_follows_the_teachers_tab_until_it_detaches(browser, app_url):
    teacher_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    student_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        teacher = teacher_context.new_page()
        teacher.goto(app_url)
        teacher.wait_for_selector("text=LLM Lab", timeout=30_000)
        teacher.get_by_text("Class mode: lead a class, or join one").click()
        teacher.locator("#class-start").click()
        teacher.wait_for_selector("#class-code", timeout=15_000)
        code = teacher.locator("#class-code").inner_text().strip()
        assert re.fullmatch(r"[A-Z2-9]{5}", code)

        student = student_context.new_page()
        student.goto(f"{app_url}?class={code}")
        student.wait_for_selector("#class-nickname textarea, #class-nickname input", timeout=30_000)
        student.locator("#class-nickname textarea, #class-nickname input").first.fill("Ada")
        student.locator("#class-join-button").click()
        student.wait_for_selector(f"text=You are in class {code} as Ada", timeout=10_000)
        teacher.wait_for_selector("#class-roster >> text=Ada", timeout=10_000)  # the teacher sees the student

        # the page took the class once after joining (the tab's view; the join brought the status line)
        student.wait_for_function("() => window.labClassView && window.labClassView.tokenizer", timeout=10_000)
        time.sleep(1.0)
        events = []  # the Gradio events the student's page sends from now on
        student.on("request", lambda request: events.append(request.url) if "/queue/join" in request.url else None)
        sentence = "The cat sat on the mat. The cat sat on the mat."
        teacher.locator("#tok-text textarea").fill(sentence)
        start = time.monotonic()
        student.wait_for_function(f"() => document.querySelector('#tok-text textarea').value === {sentence!r}",
                                  timeout=FOLLOW_S * 1000)
        print("the teacher's sentence reached the student in", round(time.monotonic() - start, 2), "s")
        student.wait_for_function("() => document.querySelector('#tok-spans').innerText.includes('·mat')",
                                  timeout=FOLLOW_S * 1000)  # and its tokens, drawn once for the class
        time.sleep(1.0)
        assert events == []  # applied from GET /class_view: no Gradio event, no redraw of its own
        # the student's own text still redraws (the change event presses the hidden redraw button)
        student.locator("#tok-text textarea").fill("A dog barked.")
        student.wait_for_function("() => document.querySelector('#tok-spans').innerText.includes('·barked')",
                                  timeout=10_000)
        assert len(events) == 1
        student.locator("#tok-text textarea").fill(sentence)  # back to the class's text, for what follows
        student.wait_for_function("() => document.querySelector('#tok-spans').innerText.includes('·mat')",
                                  timeout=10_000)
        delays, sent = [], len(events)
        for name in ("Attention", "Inside GPT", "Tokenizer"):
            teacher.get_by_role("tab", name=name, exact=True).click()
            delays.append(wait_for_tab(student, name))
            if name == "Inside GPT":  # the teacher's text, then the student's own head slider on its weights
                box = "#inside-text textarea, #inside-text input"
                teacher.locator(box).first.fill("The cat sat on the mat")
                teacher.locator(box).first.press("Enter")
                student.wait_for_function(f"() => document.querySelector({box!r}).value === 'The cat sat on the mat'",
                                          timeout=FOLLOW_S * 1000)
                student.wait_for_selector("#inside-head text:has-text('layer 3, head 0')", timeout=10_000)
                sent = len(events)
                student.locator("#inside-layer input[type=range]").focus()
                student.keyboard.press("ArrowLeft")
                student.wait_for_selector("#inside-head text:has-text('layer 2, head 0')", timeout=10_000)
                assert "·sat" in student.locator("#inside-head").inner_text()  # the class's text, from the cache
                assert len(events) == sent + 1  # (the slider's own event)
                sent += 1
        print("the student's page followed in", [round(delay, 2) for delay in delays], "s")
        time.sleep(1.0)
        assert len(events) == sent  # every tab came from GET /class_view, Inside GPT's too: no Gradio event

        student.get_by_label("Follow the teacher (untick to explore on my own)").uncheck()
        time.sleep(1.5)
        teacher.get_by_role("tab", name="Generate", exact=True).click()
        time.sleep(FOLLOW_S)
        assert selected_tab(student) == "Tokenizer"  # detached: it stays where it was
        student.get_by_label("Follow the teacher (untick to explore on my own)").check()
        print("rejoined in", round(wait_for_tab(student, "Generate"), 2), "s")
    finally:
        teacher_context.close()
        student_context.close()


@pytest.mark.app
@pytest.mark.slow
def test_the_class_board_races_everyones_runs(client):
    from ui import pretrain_tab

    teacher, student = runs.new_browser_id(), runs.new_browser_id()
    teacher_state, *_ = client.predict("", teacher, api_name="/class_start")
    student_state, *_ = client.predict(teacher_state["code"], "Cy", student, api_name="/class_join")
    manager = runs.job_manager()
    for browser, lr in ((teacher, 3e-3), (student, 1e-2)):
        history = pretrain_tab.start_run("nano", pretrain_tab.SHAKESPEARE, None, pretrain_tab.BPE_4096, 3, 2, 16, lr, 0,
                                         "ROMEO:", None, browser)[-2]
        manager.wait(history.job_id, runs.verified_browser(browser), timeout=60)
    figure, table = client.predict(None, student_state, student, api_name="/class_board")
    names = re.findall(r'"name":"([^"]+)"', figure["plot"])
    print(names, table)
    assert any(name.startswith("teacher · run 1") for name in names) and any(name.startswith("Cy · run 1")
                                                                              for name in names)
    assert "<td>Cy</td><td>run 1 · no switches</td>" in table and "<td>peak learning rate 0.01</td>" in table
    assert "<td>teacher</td><td>run 1 · no switches</td>" in table and "<td>the same</td>" in table
