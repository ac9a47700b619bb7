"""A chat-completions server on 127.0.0.1 for tests (stdlib ``http.server`` in a thread, random
port): ``POST /v1/chat/completions`` answers with a deterministic rule, the letter of the
continuation that says "good" more often ("tie" when equal). The model name picks a behaviour:
``rule`` (normal), ``flaky`` (HTTP 500 on every other request), ``down`` (always 503),
``garbage`` (a 200 whose body is not JSON), ``shapeless`` (JSON without choices), ``chatty`` (an
unreadable reply), ``slow`` (answers after 1 s), ``secret`` (401 without ``Bearer s3cret``),
``missing`` (404).

Used by the judge client's tests (``tests/feedback/test_openai_judge.py``) and by the
language-model loop's ``lm.judge=endpoint`` test (``tests/lm/test_lm_judge_endpoint.py``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: The bearer token the ``secret`` model expects.
SECRET = "s3cret"


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.count = 0


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": "no such route"}')
            return
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.count += 1
            count = self.server.count
            self.server.requests.append(payload)
            self.server.headers_seen.append(dict(self.headers))
        model = payload["model"]
        if model == "missing":
            self._send(404, b'{"error": {"message": "model missing not found"}}')
            return
        if model == "secret" and self.headers.get("Authorization") != f"Bearer {SECRET}":
            self._send(401, b'{"error": {"message": "invalid api key"}}')
            return
        if model == "down" or (model == "flaky" and count % 2 == 1):
            self._send(500 if model == "flaky" else 503, b'{"error": "overloaded"}')
            return
        if model == "garbage":
            self._send(200, b"<html>not json{", "text/html")
            return
        if model == "shapeless":
            self._send(200, b'{"id": "x", "object": "chat.completion"}')
            return
        if model == "slow":
            time.sleep(1.0)
        text = payload["messages"][0]["content"]
        a = re.search(r"Continuation A: (.*)", text).group(1)
        b = re.search(r"Continuation B: (.*)", text).group(1)
        good_a, good_b = a.split().count("good"), b.split().count("good")
        answer = "A" if good_a > good_b else "B" if good_b > good_a else "tie"
        if model == "chatty":
            answer = "Hmm, I would rather not say."
        body = {
            "id": f"chatcmpl-{count}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop"}],
        }
        self._send(200, json.dumps(body).encode())



@contextmanager
def running_chat_server() -> Iterator[ChatServer]:
    """A :class:`ChatServer` serving in a daemon thread until the block ends."""
    srv = ChatServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def chat_url(srv: ChatServer) -> str:
    """The API root of ``srv``: ``http://127.0.0.1:PORT/v1``."""
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"
