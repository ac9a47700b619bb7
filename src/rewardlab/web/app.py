"""The annotation web app of one run: a labelling page and its JSON API.

Routes (every ``/api/*`` route needs ``Authorization: Bearer <token>``, a token made by
:meth:`rewardlab.store.annotation.Annotation.add_annotator`; the page takes it once as
``?token=`` and sends it as that header)::

    GET  /                          the labelling page (self-contained HTML)
    GET  /api/me                    {annotator_id, name}
    GET  /api/next                  the query to label (two clips, or a prompt and two
                                    completions), or 204 when nothing is pending
    GET  /api/clips/{segment}.mp4   the segment's clip (rendered on demand, cached on disk)
    POST /api/preferences           {"query_id": int, "label": "left"|"right"|"equal"|"skip"}
    POST /api/undo                  delete the annotator's last answer of the current round
    GET  /api/recent                the annotator's last 10 answers
    GET  /api/status                what training is doing (waiting for this round, ...)

Every error is a JSON ``{"error": "..."}`` naming the problem, and a refused request writes
nothing. Ids out of range (negative, beyond 64 bits, not numbers) in a path or body get a 4xx
(404 for a path naming no record, 422 for a body), never a 500. Store errors are told apart
by type (:mod:`rewardlab.errors`), never by their message. Each label is committed (durably,
see :mod:`rewardlab.store`) before its ``201``.

There is one database per run, so a token only ever sees its own run. This module never
imports torch nor :mod:`rewardlab.algorithms`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rewardlab.errors import (
    AlreadyAnsweredError,
    ConflictError,
    NothingToUndoError,
    RecordError,
    RewardLabError,
    StaleRoundError,
    UnknownIdError,
    UnknownQueryError,
    UnknownSegmentError,
)
from rewardlab.feedback.clips import ClipCache
from rewardlab.feedback.run_status import read_status
from rewardlab.store import FeedbackStore
from rewardlab.types import Label, Preference, Query, Segment
from rewardlab.web.page import PAGE_HTML
from rewardlab.web.schemas import (
    ClipRef,
    Me,
    NextQuery,
    PreferenceIn,
    PreferenceOut,
    Progress,
    Recent,
    RecentAnswer,
    TextRef,
    TrainingStatus,
    Undone,
    parse_clip_name,
)

__all__ = ["MAX_BODY_BYTES", "ApiError", "create_app"]

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 4096
#: Pending queries (after the one served) whose clips are rendered ahead by ``/api/next``.
PREFETCH_QUERIES = 3
#: Seconds a clip request waits for its render.
CLIP_TIMEOUT = 120.0
#: Answers listed by ``/api/recent``.
RECENT_LIMIT = 10


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``limit`` bytes with 413 before the app sees them.

    Checks the ``Content-Length`` header and, since it may be absent or wrong (chunked
    uploads), counts the bytes actually received: the body is read up front (at most
    ``limit + 1`` bytes are kept) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"request body too large: at most {self.limit} bytes"
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _error(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > self.limit:
                    await _error(413, too_big)(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _error(413, too_big)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _annotator(request: Request) -> tuple[int, str]:
    """The ``(annotator_id, name)`` of the request's bearer token, or a 401 ApiError."""
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": "Bearer"}
    if not header:
        raise ApiError(401, "missing Authorization: Bearer <token> header", challenge)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization header must be 'Bearer <token>'", challenge)
    store: FeedbackStore = request.app.state.store
    found = store.annotation.annotator_for_token(token.strip())
    if found is None:
        raise ApiError(401, "invalid token", challenge)
    return found


#: Dependency of every ``/api`` route: the authenticated ``(annotator_id, name)``.
Who = Annotated[tuple[int, str], Depends(_annotator)]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            where, msg = "body", "is not valid JSON"
        elif err.get("type") == "missing" and not loc:
            msg = "a JSON object is required"
        parts.append(f"{where}: {msg}")
    return "invalid request: " + "; ".join(parts)


def create_app(
    run_dir: Path,
    *,
    overlap: int = 1,
    store_url: str | None = None,
    clip_dir: Path | None = None,
) -> FastAPI:
    """Build the annotation app of one run.

    The store is opened here (so a bad run directory fails before serving) and, with the
    clip cache, closed when the app shuts down.

    Args:
        run_dir: the run directory (its ``feedback.db`` unless ``store_url`` is given).
        overlap: how many annotators may be handed each query (1: never the same query).
        store_url: SQLAlchemy URL of the run's store, instead of ``run_dir/feedback.db``.
        clip_dir: where rendered clips are cached (default ``run_dir/clips``).

    Returns:
        The FastAPI app.

    Raises:
        StoreError: if the store cannot be opened.
        ValueError: if ``overlap`` is not an integer >= 1.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise ValueError(f"overlap: must be an integer >= 1, got {overlap!r}")
    run_dir = Path(run_dir)
    store = FeedbackStore(store_url) if store_url else FeedbackStore.open(run_dir)
    clips = ClipCache(clip_dir if clip_dir is not None else run_dir / "clips")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            clips.close()
            store.close()

    app = FastAPI(
        title="RewardLab annotation",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.store = store
    app.state.clips = clips
    app.state.overlap = overlap
    app.add_middleware(BodyLimitMiddleware, limit=MAX_BODY_BYTES)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(UnknownIdError)
    async def _unknown(_request: Request, exc: UnknownIdError) -> JSONResponse:
        # a route that names the record catches its own error first; this is the safety net
        return _error(404, f"unknown id: {', '.join(map(str, exc.ids)) or '?'}")

    @app.exception_handler(ConflictError)
    async def _conflict(_request: Request, exc: ConflictError) -> JSONResponse:
        return _error(409, f"refused: {type(exc).__name__}")

    @app.exception_handler(RewardLabError)
    async def _internal(_request: Request, exc: RewardLabError) -> JSONResponse:
        log.error("annotation app: %s", exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("annotation app: unexpected error", exc_info=exc)
        return _error(500, "internal error; see the server log")

    # ------------------------------------------------------------------ helpers

    def prefetch(segment_ids: list[int]) -> None:
        """Queue renders of clips not cached yet (text segments have none); never fails the
        request."""
        wanted = [i for i in dict.fromkeys(segment_ids) if not clips.path_for(i).exists()]
        if not wanted:
            return
        try:
            kinds = store.records.segment_kinds(wanted)
            control = [i for i, kind in zip(wanted, kinds, strict=True) if kind == "control"]
            segments = [
                s for s in store.records.get_segments(control) if s.render_states is not None
            ]
            clips.prefetch(segments)
        except (RewardLabError, RuntimeError) as exc:
            log.warning("annotation app: cannot prefetch clips %s: %s", wanted, exc)

    def load_segment(segment_id: int) -> Segment:
        try:
            [kind] = store.records.segment_kinds([segment_id])
        except UnknownSegmentError:
            raise ApiError(404, f"unknown segment id {segment_id}") from None
        if kind != "control":
            raise ApiError(
                404, f"segment {segment_id} is a {kind} segment: it is shown as text, not a clip"
            )
        [segment] = store.records.get_segments([segment_id])
        if segment.render_states is None:
            raise ApiError(
                404,
                f"segment {segment_id} has no render_states, so it has no clip "
                "(only MuJoCo segments recorded with render states can be shown)",
            )
        return segment

    def sides(query: Query) -> dict[str, Any]:
        """``kind``, ``prompt``, ``left`` and ``right`` of a query's :class:`NextQuery`."""
        if store.records.segment_kinds([query.left_id]) == ["text"]:
            left, right = store.records.get_text_segments([query.left_id, query.right_id])
            return {
                "kind": "text",
                "prompt": left.prompt,
                "left": TextRef(segment_id=query.left_id, completion=left.completion),
                "right": TextRef(segment_id=query.right_id, completion=right.completion),
            }
        return {
            "kind": "clip",
            "left": ClipRef(segment_id=query.left_id, clip_url=f"/api/clips/{query.left_id}.mp4"),
            "right": ClipRef(
                segment_id=query.right_id, clip_url=f"/api/clips/{query.right_id}.mp4"
            ),
        }

    # ------------------------------------------------------------------ routes

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML, headers={"Cache-Control": "no-store"})

    @app.get("/api/me", response_model=Me)
    def me(who: Who) -> Me:
        return Me(annotator_id=who[0], name=who[1])

    @app.get("/api/next", response_model=NextQuery, responses={204: {"description": "none"}})
    def next_query(who: Who) -> Any:
        query = store.annotation.next_query_for(who[0], overlap=overlap)
        if query is None:
            return Response(status_code=204)
        assert query.query_id is not None
        ahead = [
            i
            for q in store.records.pending_queries(round=query.round, limit=PREFETCH_QUERIES + 1)
            for i in (q.left_id, q.right_id)
        ]
        prefetch([query.left_id, query.right_id, *ahead])
        status = read_status(run_dir) or {}
        suggestion = None
        if isinstance(status.get("prelabel_teacher"), str):
            found = store.records.answers_of(status["prelabel_teacher"], [query.query_id])
            if query.query_id in found:
                suggestion = found[query.query_id].name.lower()
        return NextQuery(
            suggestion=suggestion,
            query_id=query.query_id,
            round=query.round,
            progress=Progress(**store.annotation.progress(who[1])),
            **sides(query),
        )

    @app.get("/api/clips/{name}", response_class=FileResponse)
    def clip(name: str, who: Who) -> FileResponse:
        segment_id = parse_clip_name(name)
        if segment_id is None:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise ApiError(
                404, f"no clip {shown!r}: clips are /api/clips/<segment id>.mp4 (a known id)"
            )
        segment = load_segment(segment_id)
        try:
            path = clips.get_or_render(segment, timeout=CLIP_TIMEOUT)
        except RecordError as exc:
            raise ApiError(500, f"cannot render the clip of segment {segment_id}: {exc}") from exc
        except TimeoutError:
            raise ApiError(
                503, f"the clip of segment {segment_id} is still rendering; try again"
            ) from None
        return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private"})

    @app.post("/api/preferences", status_code=201, response_model=PreferenceOut)
    def add_preference(body: PreferenceIn, who: Who) -> PreferenceOut:
        pref = Preference(query_id=body.query_id, label=Label.parse(body.label), teacher_id=who[1])
        try:
            pid = store.annotation.add_answer(pref)
        except UnknownQueryError:
            raise ApiError(404, f"unknown query id {body.query_id}") from None
        except AlreadyAnsweredError:
            raise ApiError(
                409, f"query {body.query_id} already answered by {who[1]!r}"
            ) from None
        except StaleRoundError:
            current = store.records.current_round()
            raise ApiError(
                409,
                f"stale round: query {body.query_id} is from an older round than the current "
                f"round {current}",
            ) from None
        return PreferenceOut(preference_id=pid)

    @app.post("/api/undo", response_model=Undone)
    def undo(who: Who) -> Undone:
        try:
            answer = store.annotation.undo_last(who[1])
        except NothingToUndoError:
            raise ApiError(
                409, "nothing to undo: no answer of yours in the current round"
            ) from None
        return Undone(undone=answer.query_id)

    @app.get("/api/recent", response_model=Recent)
    def recent(who: Who) -> Recent:
        answers = store.annotation.preferences_by(who[1], limit=RECENT_LIMIT)
        return Recent(
            current_round=store.records.current_round(),
            answers=[
                RecentAnswer(
                    preference_id=a.preference_id,
                    query_id=a.query_id,
                    round=a.round,
                    label=a.label.name.lower(),  # type: ignore[arg-type]
                    timestamp=a.timestamp,
                )
                for a in answers
            ],
        )

    @app.get("/api/status", response_model=TrainingStatus)
    def status(who: Who) -> TrainingStatus:
        known = set(TrainingStatus.model_fields) - {"now"}
        found = {k: v for k, v in (read_status(run_dir) or {}).items() if k in known}
        try:
            return TrainingStatus(**found, now=time.time())
        except ValueError:  # a status file from another version: show none rather than fail
            return TrainingStatus(now=time.time())

    @app.api_route(
        "/api/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def unknown_api(rest: str, who: Who) -> None:
        raise ApiError(404, f"no such API route: /api/{rest}")

    return app
