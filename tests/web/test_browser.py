"""The labelling page in a real browser: Debian's Chromium driven by Playwright.

A run directory with Reacher-v5 segments (carrying ``render_states``) and one round of pending
queries is served by uvicorn on loopback; an annotator opens the login link that
``rewardlab annotators add`` prints, watches both clips play, answers the whole round with the
keyboard, undoes the last answer and answers it again, then gets the next rounds as training
would add them (one while waiting, one that makes the query on screen stale); the labels are
then read from the store. A second run holds text queries (a prompt and two completions):
they are shown side by side as text and answered with the same keys and buttons.

Needs the ``playwright`` Python package and a Chromium binary (``apt-get install chromium``; the
path can be given as ``REWARDLAB_CHROMIUM``). Playwright's own browser download is never used.
Without them the test is skipped, unless ``REWARDLAB_REQUIRE_BROWSER`` is set (as in ``.ci/run``).
Set ``REWARDLAB_SCREENSHOT=docs/annotate.png`` to save the screenshot of the page (mid-round).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from rewardlab.feedback.run_status import write_status
from rewardlab.store import FeedbackStore
from rewardlab.types import Label, TextSegment
from rewardlab.web.app import create_app
from rewardlab.web.cli import add_annotator_command
from tests.helpers import reacher_segments

#: Set (as ``.ci/run`` does) to fail instead of skip when playwright or chromium is missing.
REQUIRED = bool(os.environ.get("REWARDLAB_REQUIRE_BROWSER"))

try:
    from playwright import sync_api
except ImportError:
    if REQUIRED:
        raise
    pytest.skip(
        "the playwright Python package is not installed (pip install -e '.[test]')",
        allow_module_level=True,
    )

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: Milliseconds Playwright waits for the page to reach a state (clips render on first request).
WAIT_MS = 60_000
#: The round: (key pressed, label it must store).
KEYS = [
    ("ArrowLeft", Label.LEFT),
    ("ArrowRight", Label.RIGHT),
    ("=", Label.EQUAL),
    ("Space", Label.SKIP),
]


def _chromium() -> str:
    path = os.environ.get("REWARDLAB_CHROMIUM") or shutil.which("chromium")
    if not path:
        if REQUIRED:
            pytest.fail("REWARDLAB_REQUIRE_BROWSER is set but there is no chromium binary")
        pytest.skip("no chromium binary (apt-get install chromium, or set REWARDLAB_CHROMIUM)")
    return path


@contextmanager
def _serve(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with 8 Reacher-v5 segments and one round (round 0) of 4 pending queries."""
    run = tmp_path_factory.mktemp("browser") / "run"
    with FeedbackStore.open(run) as store:
        ids = store.records.add_segments(reacher_segments(8, length=25, seed=0))
        store.records.add_queries([(ids[2 * i], ids[2 * i + 1]) for i in range(4)], round=0)
    return run


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium, launched by Playwright (never Playwright's own download)."""
    chromium = _chromium()
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _wait_until_playing(page) -> None:
    """The next query is ready (answer buttons enabled) and both its clips are decoded
    (readyState >= HAVE_CURRENT_DATA), error-free, and advancing."""
    page.wait_for_function(
        "() => document.querySelectorAll('button[data-label]:enabled').length === 4"
        " && [...document.querySelectorAll('video')].every("
        "v => v.readyState >= 2 && !v.error && v.currentTime > 0)",
        timeout=WAIT_MS,
    )
    start = page.evaluate("() => [...document.querySelectorAll('video')].map(v => v.currentTime)")
    page.wait_for_function(
        "start => [...document.querySelectorAll('video')].every("
        "(v, i) => !v.error && v.readyState >= 2 && v.currentTime !== start[i])",
        arg=start,
        timeout=WAIT_MS,
    )
    state = page.evaluate(
        "() => [...document.querySelectorAll('video')].map(v => ({error: v.error && v.error.code,"
        " width: v.videoWidth, height: v.videoHeight, duration: v.duration}))"
    )
    for video in state:
        assert video["error"] is None
        assert (video["width"], video["height"]) == (320, 240)
        assert video["duration"] == pytest.approx(1.0, abs=0.1)  # 25 frames at 25 fps


def _progress(page, answered: int, mine: int, round: int = 0, size: int = 4) -> None:
    page.wait_for_function(
        "text => document.getElementById('progress').textContent.startsWith(text)",
        arg=f"Round {round}: {answered} of {size} answered (you: {mine})",
        timeout=WAIT_MS,
    )


def _recent(page) -> list[str]:
    return [t.strip() for t in page.locator("#recent-list li").all_inner_texts()]


def test_label_a_round_by_keyboard_in_chromium(run_dir: Path, browser) -> None:
    with FeedbackStore.open(run_dir) as store:
        qids = [q.query_id for q in store.records.pending_queries(round=0)]
        queries = store.records.get_queries(qids)
        segment_ids = sorted({i for q in queries for i in (q.left_id, q.right_id)})
    problems: list[str] = []
    with _serve(create_app(run_dir)) as base:
        port = int(base.rsplit(":", 1)[1])
        link = add_annotator_command(run_dir, "ada", "127.0.0.1", port)
        # what a trainer with teacher=human writes while it waits for this round
        deadline = time.time() + 600

        def waiting(answered: int) -> None:
            write_status(run_dir, state="waiting", step=1500, total_steps=20000, round=0,
                         round_size=4, answered=answered, required_answers=1,
                         on_timeout="scripted", deadline=deadline, asked=4, budget=200,
                         next_round_step=None)

        waiting(0)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        try:
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else 0,
            )
            page.goto(link)
            assert "token" not in page.url  # the token leaves the address bar
            page.wait_for_function(
                "() => document.getElementById('who').textContent === 'ada'", timeout=WAIT_MS
            )
            _progress(page, 0, 0)
            page.wait_for_function(
                "() => document.getElementById('training').textContent.startsWith("
                "'Training is paused until round 0 is answered: 0 of 4 queries done')"
                " && document.getElementById('training').textContent.includes("
                "'left, then a scripted teacher answers the rest')",
                timeout=WAIT_MS,
            )
            _wait_until_playing(page)
            # looped: the 1 s clips end and play on (both restart when either ends)
            page.evaluate(
                "() => { window.ends = 0; document.querySelectorAll('video').forEach("
                "v => v.addEventListener('ended', () => { window.ends += 1; })); }"
            )
            page.wait_for_function(
                "() => window.ends >= 2 && [...document.querySelectorAll('video')].every("
                "v => !v.paused && !v.ended && !v.error)",
                timeout=WAIT_MS,
            )

            for done, (key, label) in enumerate(KEYS, start=1):
                if done == 3:
                    waiting(2)  # as the trainer polling the store would
                    page.wait_for_function(
                        "() => document.getElementById('training').textContent.includes("
                        "'2 of 4 queries done')", timeout=WAIT_MS,
                    )
                    if shot := os.environ.get("REWARDLAB_SCREENSHOT"):
                        page.screenshot(path=shot)
                page.keyboard.press(key)
                page.wait_for_function(
                    "n => document.querySelectorAll('#recent-list li').length === n",
                    arg=done,
                    timeout=WAIT_MS,
                )
                assert _recent(page)[0].startswith(
                    f"Query {qids[done - 1]} (round 0): {label.name.lower()}"
                )
                if done < len(KEYS):
                    _progress(page, done, done)
                    _wait_until_playing(page)
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT_MS)
            assert not page.locator("#task").is_visible()
            assert page.locator("#progress").inner_text() == ""  # no stale "3 of 4"
            assert [r.split(":")[0] for r in _recent(page)] == [
                f"Query {q} (round 0)" for q in reversed(qids)
            ]

            page.get_by_role("button", name="Undo").click()  # undo the last answer (skip)
            page.locator("#task").wait_for(state="visible", timeout=WAIT_MS)
            _progress(page, 3, 3)
            _wait_until_playing(page)
            assert len(_recent(page)) == 3
            page.keyboard.press("ArrowLeft")  # answer it again
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT_MS)
            page.wait_for_function(
                "() => document.querySelectorAll('#recent-list li').length === 4",
                timeout=WAIT_MS,
            )
            assert _recent(page)[0].startswith(f"Query {qids[3]} (round 0): left")
            assert page.locator("#status").inner_text().strip() == ""

            # training adds round 1 while the page waits: the page polls and shows it
            with FeedbackStore.open(run_dir) as store:
                [late] = store.records.add_queries([(segment_ids[0], segment_ids[3])], round=1)
            _progress(page, 0, 0, round=1, size=1)
            _wait_until_playing(page)
            # round 2 arrives while round 1's query is on screen: its answer is refused as
            # stale, the page says so and moves on to round 2
            with FeedbackStore.open(run_dir) as store:
                [newest] = store.records.add_queries([(segment_ids[5], segment_ids[6])], round=2)
            page.keyboard.press("=")
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('stale round')",
                timeout=WAIT_MS,
            )
            _progress(page, 0, 0, round=2, size=1)
            _wait_until_playing(page)
            assert "stale round" in page.locator("#status").inner_text()  # still shown
            page.keyboard.press("ArrowRight")
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT_MS)
            assert _recent(page)[0].startswith(f"Query {newest} (round 2): right")
        finally:
            page.close()
    # Chromium logs the refused (409) answer as a failed resource load; nothing else may fail
    assert [p for p in problems if "status of 409" not in p] == []
    assert len(problems) == 1
    with FeedbackStore.open(run_dir) as store:
        prefs = store.records.preferences()
        assert store.summary.counts()["preferences"] == 5
    assert [(p.query_id, p.label, p.teacher_id) for p in prefs] == [
        (qids[0], Label.LEFT, "ada"),
        (qids[1], Label.RIGHT, "ada"),
        (qids[2], Label.EQUAL, "ada"),
        (qids[3], Label.LEFT, "ada"),
        (newest, Label.RIGHT, "ada"),
    ]
    assert late not in {p.query_id for p in prefs}


def test_missing_or_wrong_token_is_explained(tmp_path: Path, browser) -> None:
    with FeedbackStore.open(tmp_path) as store:
        store.annotation.add_annotator("ada")
    with _serve(create_app(tmp_path)) as base:
        for url, message in (
            (base + "/", "No token: open the login link you were given"),
            (base + "/?token=not-a-token", "This link is not valid: invalid token"),
        ):
            page = browser.new_page()
            try:
                page.goto(url)
                page.wait_for_function(
                    "text => document.getElementById('status').textContent.includes(text)",
                    arg=message,
                    timeout=WAIT_MS,
                )
                assert page.locator("button[data-label]:enabled").count() == 0
            finally:
                page.close()


def _completion(i: int, prompt: str, completion: str) -> TextSegment:
    return TextSegment(prompt, completion, [1, 2], [3, 4, 5], "sentiment/test", prompt_id=0,
                       sample_id=i, gold=None)


def test_label_text_queries_in_chromium(tmp_path: Path, browser) -> None:
    """Two text queries: the prompt and both completions are shown as text (markup in a
    completion stays text), the videos are hidden, keys and buttons answer as for clips."""
    prompt = "The trip to the coast was"
    texts = [
        " a wonderful day — ünïcødé 🙂",
        " <img src=x onerror=\"window.injected=1\"> <b>not bold</b>",
        " long and tiring",
        " pleasant enough",
    ]
    with FeedbackStore.open(tmp_path) as store:
        ids = store.records.add_text_segments(
            [_completion(i, prompt, t) for i, t in enumerate(texts)]
        )
        qids = store.records.add_queries([(ids[0], ids[1]), (ids[2], ids[3])], round=0)
    problems: list[str] = []
    with _serve(create_app(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])
        link = add_annotator_command(tmp_path, "grace", "127.0.0.1", port)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        try:
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else 0,
            )
            page.goto(link)
            page.locator("#left-text").wait_for(state="visible", timeout=WAIT_MS)
            page.wait_for_function(
                "() => document.querySelectorAll('button[data-label]:enabled').length === 4",
                timeout=WAIT_MS,
            )
            _progress(page, 0, 0, size=2)
            assert page.locator("#prompt").inner_text() == prompt
            assert page.locator("#left-text .continuation").text_content() == texts[0]
            assert page.locator("#right-text .continuation").text_content() == texts[1]
            assert page.locator("#left-text").inner_text() == prompt + texts[0]
            assert page.locator("#right-text img, #right-text b").count() == 0  # text, not HTML
            assert page.evaluate("() => window.injected === undefined")
            assert not page.locator("#clip-query").is_visible()
            # side by side: the left box is left of the right box, on the same row
            left_box = page.locator("#left-text").bounding_box()
            right_box = page.locator("#right-text").bounding_box()
            assert left_box["x"] + left_box["width"] <= right_box["x"]
            assert abs(left_box["y"] - right_box["y"]) < 1
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "text => document.querySelector('#left-text .continuation').textContent === text",
                arg=texts[2],
                timeout=WAIT_MS,
            )
            _progress(page, 1, 1, size=2)
            page.get_by_role("button", name="Equal").click()
            page.locator("#waiting").wait_for(state="visible", timeout=WAIT_MS)
            page.wait_for_function(
                "() => document.querySelectorAll('#recent-list li').length === 2",
                timeout=WAIT_MS,
            )
            assert _recent(page)[0].startswith(f"Query {qids[1]} (round 0): equal")
        finally:
            page.close()
    assert problems == []
    with FeedbackStore.open(tmp_path) as store:
        prefs = store.records.preferences()
    assert [(p.query_id, p.label, p.teacher_id) for p in prefs] == [
        (qids[0], Label.RIGHT, "grace"),
        (qids[1], Label.EQUAL, "grace"),
    ]
