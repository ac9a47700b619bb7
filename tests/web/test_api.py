"""Tests of the annotation web app (FastAPI TestClient on throwaway run directories)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rewardlab.store import FeedbackStore
from rewardlab.types import Label, Preference, Segment
from rewardlab.web.app import MAX_BODY_BYTES, create_app
from rewardlab.web.cli import add_annotator_command, login_link
from tests.helpers import fake_segments, text_segments

T = 4
API_ROUTES = [
    ("GET", "/api/me"),
    ("GET", "/api/next"),
    ("GET", "/api/recent"),
    ("GET", "/api/status"),
    ("GET", "/api/clips/1.mp4"),
    ("POST", "/api/preferences"),
    ("POST", "/api/undo"),
    ("GET", "/api/nonexistent"),
]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Path, list[int], dict[str, str]]]:
    """A run with 3 segments, 3 round-0 queries and annotators alice and bob."""
    run_dir = tmp_path / "run"
    with FeedbackStore.open(run_dir) as s:
        a, b, c = s.records.add_segments(fake_segments(3, length=T, seed=1))
        qids = s.records.add_queries([(a, b), (b, c), (c, a)], round=0)
        tokens = {name: s.annotation.add_annotator(name)[1] for name in ("alice", "bob")}
    yield run_dir, qids, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def counts(run_dir: Path) -> dict[str, int]:
    with FeedbackStore.open(run_dir) as s:
        return s.summary.counts()


def client_for(run_dir: Path, **kwargs) -> TestClient:
    return TestClient(create_app(run_dir, **kwargs))


def test_page_is_served_without_token(run) -> None:
    run_dir, _, _ = run
    with client_for(run_dir) as client:
        resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert html.count("<video") == 2 and "muted" in html
    for text in ("Left better", "Right better", "Equal", "Can't tell", "ArrowLeft", "ArrowRight"):
        assert text in html
    assert "waiting for the next round" in html and "2000" in html
    assert "Authorization" in html and "Undo" in html


@pytest.mark.parametrize("method,path", API_ROUTES)
def test_every_api_route_needs_a_valid_token(run, method: str, path: str) -> None:
    run_dir, qids, _ = run
    with client_for(run_dir) as client:
        for headers in ({}, auth("wrong-token"), {"Authorization": "Basic abc"}):
            resp = client.request(
                method, path, headers=headers, json={"query_id": qids[0], "label": "left"}
            )
            assert resp.status_code == 401, (path, headers)
            assert "error" in resp.json() and resp.headers["www-authenticate"] == "Bearer"
    assert counts(run_dir)["preferences"] == 0


def test_me_next_submit_recent_and_labels_in_store(run) -> None:
    run_dir, qids, tokens = run
    with client_for(run_dir) as client:
        h = auth(tokens["alice"])
        assert client.get("/api/me", headers=h).json()["name"] == "alice"
        nxt = client.get("/api/next", headers=h).json()
        assert nxt["query_id"] == qids[0] and nxt["round"] == 0
        assert nxt["kind"] == "clip" and nxt["prompt"] is None
        assert nxt["left"]["clip_url"] == f"/api/clips/{nxt['left']['segment_id']}.mp4"
        assert nxt["progress"]["round_size"] == 3 and nxt["progress"]["answered_in_round"] == 0
        assert client.get("/api/next", headers=h).json()["query_id"] == qids[0]  # refresh
        resp = client.post(
            "/api/preferences", headers=h, json={"query_id": qids[0], "label": "left"}
        )
        assert resp.status_code == 201 and resp.json()["preference_id"] > 0
        nxt = client.get("/api/next", headers=h).json()
        assert nxt["query_id"] == qids[1]
        assert nxt["progress"]["answered_in_round"] == 1 and nxt["progress"]["total_queries"] == 3
        client.post("/api/preferences", headers=h, json={"query_id": qids[1], "label": "skip"})
        recent = client.get("/api/recent", headers=h).json()
        assert recent["current_round"] == 0
        assert [(r["query_id"], r["label"]) for r in recent["answers"]] == [
            (qids[1], "skip"),
            (qids[0], "left"),
        ]
    with FeedbackStore.open(run_dir) as s:
        prefs = s.records.preferences()
    assert [(p.query_id, p.label, p.teacher_id) for p in prefs] == [
        (qids[0], Label.LEFT, "alice"),
        (qids[1], Label.SKIP, "alice"),
    ]


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"query_id": 999, "label": "left"}, 404, "unknown query id 999"),
        ({"query_id": "first", "label": "left"}, 422, "query_id"),
        ({"label": "left"}, 422, "query_id"),
        ({"query_id": 1, "label": "better"}, 422, "label"),
        ({"query_id": 1, "label": "left", "extra": 1}, 422, "extra"),
        ([1, 2], 422, "invalid request"),
    ],
)
def test_bad_preferences_write_nothing(run, body, status: int, message: str) -> None:
    run_dir, _, tokens = run
    before = counts(run_dir)
    with client_for(run_dir) as client:
        resp = client.post("/api/preferences", headers=auth(tokens["alice"]), json=body)
    assert resp.status_code == status
    assert set(resp.json()) == {"error"} and message in resp.json()["error"]
    assert counts(run_dir) == before


def test_malformed_json_double_submit_and_large_body(run) -> None:
    run_dir, qids, tokens = run
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        resp = client.post(
            "/api/preferences", headers={**h, "Content-Type": "application/json"}, content=b"{x"
        )
        assert resp.status_code == 422 and "JSON" in resp.json()["error"]
        ok = {"query_id": qids[0], "label": "right"}
        assert client.post("/api/preferences", headers=h, json=ok).status_code == 201
        resp = client.post("/api/preferences", headers=h, json={**ok, "label": "left"})
        assert resp.status_code == 409 and "already answered by 'alice'" in resp.json()["error"]
        big = b'{"query_id": 2, "label": "left", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
        resp = client.post(
            "/api/preferences", headers={**h, "Content-Type": "application/json"}, content=big
        )
        assert resp.status_code == 413 and "too large" in resp.json()["error"]

        def chunks():  # no Content-Length: the middleware counts the bytes received
            yield big[:2000]
            yield big[2000:]

        resp = client.post(
            "/api/preferences", headers={**h, "Content-Type": "application/json"}, content=chunks()
        )
        assert resp.status_code == 413 and "too large" in resp.json()["error"]
    assert counts(run_dir)["preferences"] == 1


def test_stale_round_is_refused(run) -> None:
    run_dir, qids, tokens = run
    with FeedbackStore.open(run_dir) as s:
        [new] = s.records.add_queries([(1, 2)], round=1)
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        resp = client.post(
            "/api/preferences", headers=h, json={"query_id": qids[0], "label": "left"}
        )
        assert resp.status_code == 409 and "stale round" in resp.json()["error"]
        assert client.get("/api/next", headers=h).json()["query_id"] == new
    assert counts(run_dir)["preferences"] == 0


def test_undo(run) -> None:
    run_dir, qids, tokens = run
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        resp = client.post("/api/undo", headers=h)
        assert resp.status_code == 409 and "nothing to undo" in resp.json()["error"]
        for qid in qids[:2]:
            assert client.get("/api/next", headers=h).json()["query_id"] == qid
            client.post("/api/preferences", headers=h, json={"query_id": qid, "label": "left"})
        resp = client.post("/api/undo", headers=h)
        assert resp.status_code == 200 and resp.json() == {"undone": qids[1]}
        assert client.get("/api/next", headers=h).json()["query_id"] == qids[1]
        assert [r["query_id"] for r in client.get("/api/recent", headers=h).json()["answers"]] == [
            qids[0]
        ]
    assert counts(run_dir)["preferences"] == 1


def test_two_annotators_overlap_one_and_two(run) -> None:
    run_dir, qids, tokens = run
    a, b = auth(tokens["alice"]), auth(tokens["bob"])
    with client_for(run_dir, overlap=1) as client:
        assert client.get("/api/next", headers=a).json()["query_id"] == qids[0]
        assert client.get("/api/next", headers=b).json()["query_id"] == qids[1]
    run2 = run_dir.parent / "run2"
    with FeedbackStore.open(run2) as s:
        x, y = s.records.add_segments(fake_segments(2, length=T, seed=1))
        q = s.records.add_queries([(x, y), (y, x)], round=0)
        ta, tb = s.annotation.add_annotator("alice")[1], s.annotation.add_annotator("bob")[1]
    a, b = auth(ta), auth(tb)
    with client_for(run2, overlap=2) as client:
        for h, label in ((a, "left"), (b, "left")):
            assert client.get("/api/next", headers=h).json()["query_id"] == q[0]
            client.post("/api/preferences", headers=h, json={"query_id": q[0], "label": label})
        for h, label in ((a, "left"), (b, "right")):
            assert client.get("/api/next", headers=h).json()["query_id"] == q[1]
            client.post("/api/preferences", headers=h, json={"query_id": q[1], "label": label})
        assert client.get("/api/next", headers=a).status_code == 204
    with FeedbackStore.open(run2) as s:
        assert s.summary.agreement() == dict(overlapping=2, compared=2, agreeing=1, fraction=0.5)
        assert s.summary.counts()["preferences"] == 4
        assert s.records.training_arrays()["query_ids"].tolist() == [q[0], q[0], q[1], q[1]]


def test_nothing_pending_is_204(tmp_path: Path) -> None:
    with FeedbackStore.open(tmp_path) as s:
        token = s.annotation.add_annotator("alice")[1]
    with client_for(tmp_path) as client:
        resp = client.get("/api/next", headers=auth(token))
    assert resp.status_code == 204 and resp.content == b""


def test_restart_resumes_at_first_unanswered(run) -> None:
    run_dir, qids, tokens = run
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        client.get("/api/next", headers=h)
        client.post("/api/preferences", headers=h, json={"query_id": qids[0], "label": "equal"})
    with client_for(run_dir) as client:  # a new app on the same run directory
        assert client.get("/api/next", headers=h).json()["query_id"] == qids[1]
        assert client.get("/api/me", headers=h).json()["name"] == "alice"


#: Ids no record can have, or that are no ids at all: beyond 64 bits, negative, huge digit
#: strings (beyond Python's 4300-digit int parsing limit too), non-numeric, non-ASCII digits.
BAD_IDS: list[object] = [
    2**63, 2**64, 2**70, 2**200, -1, -(2**63), -(2**70), 10**100, "9" * 30, "9" * 5000, "abc",
    "1e5", "0x10", "1.0", " 1", "", "%00", "\uff11", "\u0661", 1.5, 1e300, None, True, [1],
    {"id": 1},
]


def _out_of_range_requests(rng: np.random.Generator) -> list[tuple[str, str, object]]:
    """``(method, path, json body)`` requests putting one bad id in a path or a body field."""
    ids = list(BAD_IDS)
    for _ in range(10):  # random ints around and beyond the 64-bit bounds
        bits = int(rng.integers(63, 300))
        ids.append(int(rng.choice([-1, 1])) * (2**bits + int(rng.integers(-5, 5))))
        ids.append("".join(rng.choice(list("0123456789"), size=int(rng.integers(20, 6000)))))
    requests: list[tuple[str, str, object]] = []
    for bad in ids:
        text = str(bad)
        requests += [
            ("GET", f"/api/clips/{text}.mp4", None),
            ("GET", f"/api/clips/{text}", None),
            ("GET", f"/api/clips/{text}.mp4/extra", None),
            ("GET", f"/api/{text}", None),
            ("GET", f"/api/next?query_id={text[:100]}", None),
            ("POST", "/api/preferences", {"query_id": bad, "label": "left"}),
            ("POST", "/api/preferences", {"query_id": 1, "label": bad}),
            ("POST", "/api/preferences", {"query_id": bad, "label": bad, "segment_id": bad}),
            ("POST", "/api/undo", {"preference_id": bad}),
        ]
    return requests


def test_out_of_range_ids_are_4xx_json_never_500(run) -> None:
    """A small fuzz loop over every route: a bad id anywhere is a 4xx JSON error."""
    run_dir, _, tokens = run
    before = counts(run_dir)
    rng = np.random.default_rng(0)
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client:
        for method, path, body in _out_of_range_requests(rng):
            kwargs = {} if body is None else {"json": body}
            resp = client.request(method, path, headers=auth(tokens["alice"]), **kwargs)
            where = (method, path[:80], str(body)[:80], resp.status_code, resp.text[:200])
            assert resp.status_code < 500, where
            assert resp.headers["content-type"].startswith("application/json"), where
            if "?" not in path:  # a query string is ignored; a bad path or body is refused
                assert 400 <= resp.status_code < 500, where
                assert isinstance(resp.json().get("error"), str), where
        for token in ("x" * 3000, "\x7f", "a" * 43, "0" * 64, str(2**70)):
            resp = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 401 and "error" in resp.json()
    assert counts(run_dir) == before


@pytest.mark.parametrize(
    "query_id,status",
    [(2**63 - 1, 404), (2**63, 422), (2**70, 422), (-1, 422), (10**30, 422)],
)
def test_preference_query_id_bounds(run, query_id: int, status: int) -> None:
    run_dir, _, tokens = run
    with client_for(run_dir) as client:
        resp = client.post(
            "/api/preferences",
            headers=auth(tokens["alice"]),
            json={"query_id": query_id, "label": "left"},
        )
    assert resp.status_code == status
    expected = f"unknown query id {query_id}" if status == 404 else "query_id"
    assert expected in resp.json()["error"]


def test_store_errors_map_to_statuses_by_type(run, monkeypatch) -> None:
    """Store errors no route catches get their status from their type, never their text."""
    from rewardlab.errors import DuplicateAnnotatorError, StoreError, UnknownAnnotatorError

    run_dir, _, tokens = run
    app = create_app(run_dir)
    raised: list[Exception] = []

    def failing(*_args, **_kwargs):
        raise raised[-1]

    monkeypatch.setattr(app.state.store.annotation, "next_query_for", failing)
    h = auth(tokens["alice"])
    cases = [
        (UnknownAnnotatorError("unknown segment ids: looks like a segment", (7,)), 404, "7"),
        (DuplicateAnnotatorError("unknown query ids: 3"), 409, "DuplicateAnnotatorError"),
        (StoreError("database is locked"), 500, "internal error (StoreError)"),
    ]
    with TestClient(app, raise_server_exceptions=False) as client:
        for error, status, text in cases:
            raised.append(error)
            resp = client.get("/api/next", headers=h)
            assert resp.status_code == status and text in resp.json()["error"], resp.text


def test_parse_clip_name() -> None:
    from rewardlab.web.schemas import parse_clip_name

    assert parse_clip_name("7.mp4") == 7 and parse_clip_name("007.mp4") == 7
    assert parse_clip_name(f"{2**63 - 1}.mp4") == 2**63 - 1
    for name in (f"{2**63}.mp4", "9" * 5000 + ".mp4", "-1.mp4", "1", "a.mp4", "\uff11.mp4",
                 "1.mp4.mp4", " 1.mp4", "1.MP4", ""):
        assert parse_clip_name(name) is None, name


def test_clip_errors(run) -> None:
    run_dir, _, tokens = run
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        resp = client.get("/api/clips/1.mp4", headers=h)
        assert resp.status_code == 404 and "no render_states" in resp.json()["error"]
        resp = client.get("/api/clips/77.mp4", headers=h)
        assert resp.status_code == 404 and "unknown segment id 77" in resp.json()["error"]
        resp = client.get("/api/clips/abc.mp4", headers=h)
        assert resp.status_code == 404 and "no clip 'abc.mp4'" in resp.json()["error"]
        resp = client.get(f"/api/clips/{2**64}.mp4", headers=h)
        assert resp.status_code == 404 and "no clip" in resp.json()["error"]
        resp = client.get(f"/api/clips/{2**63 - 1}.mp4", headers=h)
        assert resp.status_code == 404 and f"unknown segment id {2**63 - 1}" in resp.text


def _reacher_segment() -> Segment:
    import gymnasium as gym

    env = gym.make("Reacher-v5")
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    states, observations, actions = [], [], []
    for _ in range(10):
        data = env.unwrapped.data
        states.append(np.concatenate([data.qpos, data.qvel]))
        action = env.action_space.sample()
        observations.append(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    env.close()
    return Segment(
        obs=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        true_rewards=None,
        env_id="Reacher-v5",
        episode_id=0,
        start_step=0,
        render_states=np.asarray(states, dtype=np.float64),
    )


@pytest.mark.e2e
def test_clip_of_a_reacher_segment(tmp_path: Path) -> None:
    seg = _reacher_segment()
    with FeedbackStore.open(tmp_path) as s:
        a, b = s.records.add_segments([seg, seg])
        s.records.add_queries([(a, b)], round=0)
        token = s.annotation.add_annotator("alice")[1]
    with client_for(tmp_path, clip_dir=tmp_path / "cache") as client:
        nxt = client.get("/api/next", headers=auth(token)).json()  # queues both clips
        resp = client.get(nxt["left"]["clip_url"], headers=auth(token))
        assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
        assert resp.content[4:8] == b"ftyp" and len(resp.content) > 1000
        assert (tmp_path / "cache" / f"segment-{a}.mp4").is_file()
        assert client.get(nxt["right"]["clip_url"], headers=auth(token)).status_code == 200


def test_cli_functions(run) -> None:
    run_dir, _, _ = run
    link = add_annotator_command(run_dir, "carol", "127.0.0.1", 8123)
    assert link.startswith("http://127.0.0.1:8123/?token=")
    token = link.split("token=", 1)[1]
    with FeedbackStore.open(run_dir) as s:
        assert s.annotation.annotator_for_token(token)[1] == "carol"
    assert login_link("::1", 80, "t") == "http://[::1]:80/?token=t"
    from rewardlab.errors import RewardLabError

    with pytest.raises(RewardLabError, match="does not exist"):
        add_annotator_command(run_dir / "missing", "dave", "h", 1)
    with pytest.raises(RewardLabError, match="already exists"):
        add_annotator_command(run_dir, "carol", "h", 1)


def test_web_does_not_import_torch_or_algorithms() -> None:
    code = (
        "import sys, rewardlab.web.app, rewardlab.web.cli; "
        "bad = [m for m in ('torch', 'rewardlab.algorithms') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_status_shows_what_training_does(run) -> None:
    from rewardlab.feedback.run_status import write_status

    run_dir, _, tokens = run
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        empty = client.get("/api/status", headers=h).json()
        assert empty["state"] is None and empty["now"] > 0  # no trainer attached
        write_status(run_dir, state="waiting", step=1500, total_steps=20000, round=0,
                     round_size=3, answered=1, required_answers=1, deadline=123.0,
                     on_timeout="skip", asked=3, budget=200, next_round_step=None,
                     prelabel_teacher=None, app_url="http://127.0.0.1:8000/", extra="ignored")
        got = client.get("/api/status", headers=h).json()
        assert got["state"] == "waiting" and got["round_size"] == 3 and got["budget"] == 200
        assert got["deadline"] == 123.0 and got["on_timeout"] == "skip" and "extra" not in got
        (run_dir / "status.json").write_text("{not json")
        assert client.get("/api/status", headers=h).json()["state"] is None


def test_mixed_mode_shows_the_scripted_suggestion(run) -> None:
    from rewardlab.feedback.run_status import write_status

    run_dir, qids, tokens = run
    with FeedbackStore.open(run_dir) as s:
        s.records.add_preferences([Preference(qids[0], Label.RIGHT, "oracle")])
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        assert client.get("/api/next", headers=h).json()["suggestion"] is None
        write_status(run_dir, state="waiting", prelabel_teacher="oracle")
        nxt = client.get("/api/next", headers=h).json()
        assert nxt["query_id"] == qids[0] and nxt["suggestion"] == "right"
        # the person overrides: their answer is stored beside the scripted one
        body = {"query_id": qids[0], "label": "left"}
        resp = client.post("/api/preferences", headers=h, json=body)
        assert resp.status_code == 201
        assert client.get("/api/next", headers=h).json()["suggestion"] is None  # q1: no pre-label
    with FeedbackStore.open(run_dir) as s:
        used = s.records.used_answers([qids[0]], fallback_teachers=["oracle"])
    assert used == [(qids[0], Label.LEFT)]


def test_annotators_add_links_to_the_running_trainer(run, capsys) -> None:
    from rewardlab.cli.main import main
    from rewardlab.feedback.run_status import write_status

    run_dir, _, _ = run
    assert main(["annotators", "add", "carol", "--run", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:8000/?token=")
    write_status(run_dir, state="waiting", app_url="http://127.0.0.1:4321/")
    assert main(["annotators", "add", "dave", "--run", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:4321/?token=")
    assert main(["annotators", "add", "erin", "--run", str(run_dir), "--port", "9"]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:9/?token=")


# ---------------------------------------------------------------------- text queries


@pytest.fixture
def text_run(tmp_path: Path) -> Iterator[tuple[Path, list[int], list[int], dict[str, str]]]:
    """A run with 4 completions of 2 prompts, 2 round-0 text queries and annotator alice."""
    run_dir = tmp_path / "text-run"
    with FeedbackStore.open(run_dir) as s:
        seg_ids = s.records.add_text_segments(text_segments(4, prompts=2))
        qids = s.records.add_queries(
            [(seg_ids[0], seg_ids[2]), (seg_ids[3], seg_ids[1])], round=0
        )
        tokens = {"alice": s.annotation.add_annotator("alice")[1]}
    yield run_dir, qids, seg_ids, tokens


def test_text_query_is_served_answered_and_stored(text_run) -> None:
    run_dir, qids, seg_ids, tokens = text_run
    segs = text_segments(4, prompts=2)
    h = auth(tokens["alice"])
    with client_for(run_dir) as client:
        nxt = client.get("/api/next", headers=h).json()
        assert nxt["query_id"] == qids[0] and nxt["kind"] == "text"
        assert nxt["prompt"] == segs[0].prompt
        assert nxt["left"] == {"segment_id": seg_ids[0], "completion": segs[0].completion}
        assert nxt["right"] == {"segment_id": seg_ids[2], "completion": segs[2].completion}
        assert nxt["progress"]["round_size"] == 2
        # same keys, same auth, same rules as clips
        assert client.get("/api/next").status_code == 401
        resp = client.post("/api/preferences", headers=h,
                           json={"query_id": qids[0], "label": "left"})
        assert resp.status_code == 201
        # committed before the 201: a separate connection reads it
        with FeedbackStore.open(run_dir) as s:
            assert s.records.answers_of("alice", [qids[0]]) == {qids[0]: Label.LEFT}
        again = client.post("/api/preferences", headers=h,
                            json={"query_id": qids[0], "label": "right"})
        assert again.status_code == 409
        nxt = client.get("/api/next", headers=h).json()
        assert nxt["query_id"] == qids[1] and nxt["prompt"] == segs[1].prompt
        assert nxt["left"]["completion"] == segs[3].completion  # the unicode one
        assert "🙂" in nxt["left"]["completion"]
        assert client.post("/api/preferences", headers=h,
                           json={"query_id": qids[1], "label": "equal"}).status_code == 201
        assert client.get("/api/next", headers=h).status_code == 204
        # a text segment has no clip
        clip = client.get(f"/api/clips/{seg_ids[0]}.mp4", headers=h)
        assert clip.status_code == 404 and "text segment" in clip.json()["error"]
        assert client.post("/api/undo", headers=h).json() == {"undone": qids[1]}
    with FeedbackStore.open(run_dir) as s:
        pairs = s.records.text_training_pairs()
    assert pairs.query_ids.tolist() == [qids[0]] and pairs.labels.tolist() == [Label.LEFT]
    assert pairs.left[0].completion == segs[0].completion


def test_clip_and_text_rounds_in_one_store(text_run) -> None:
    """A later round of clips after a text round: each query is served as its kind."""
    run_dir, qids, _, tokens = text_run
    with FeedbackStore.open(run_dir) as s:
        a, b = s.records.add_segments(fake_segments(2, length=T, seed=2))
        [clip_q] = s.records.add_queries([(a, b)], round=1)
    with client_for(run_dir) as client:
        nxt = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert nxt["query_id"] == clip_q and nxt["kind"] == "clip"
    assert nxt["left"] == {"segment_id": a, "clip_url": f"/api/clips/{a}.mp4"}


def test_page_has_the_text_view(text_run) -> None:
    run_dir, _, _, _ = text_run
    with client_for(run_dir) as client:
        html = client.get("/").text
    assert 'id="text-query"' in html and 'id="left-text"' in html and 'id="right-text"' in html
    assert "innerHTML" not in html.split("function showText")[1].split("function clock")[0]


def test_background_server_prefetch_skips_text_segments(text_run) -> None:
    """The trainer's server queues clip renders of a round's segments: text ones have none."""
    from rewardlab.web.server import BackgroundServer

    run_dir, _, seg_ids, _ = text_run
    server = BackgroundServer(run_dir, port=0)
    try:
        with FeedbackStore.open(run_dir) as s:
            [control] = s.records.add_segments(fake_segments(1, length=T, seed=3))
            server.prefetch([*seg_ids, control], s)  # no render states either: nothing queued
    finally:
        server.close()
    assert not (run_dir / "clips").exists() or not any((run_dir / "clips").iterdir())
