"""Serve the annotation app from another program (the trainer) in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from rewardlab.errors import ConfigError, RewardLabError
from rewardlab.store import FeedbackStore

__all__ = ["BackgroundServer"]

#: Seconds to wait for the server to start.
START_TIMEOUT_S = 30.0


class BackgroundServer:
    """Uvicorn serving :func:`rewardlab.web.app.create_app` in a daemon thread.

    The socket is bound up front, so a port in use is reported at once as a config error,
    and port 0 picks a free port (read it back from :attr:`port`).

    Args:
        run_dir: the run directory.
        host: interface to listen on, e.g. ``"127.0.0.1"``.
        port: TCP port (0: any free port).
        overlap: people handed each query (see :func:`~rewardlab.web.app.create_app`).
        store_url: the run's store URL, if not ``run_dir/feedback.db``.

    Raises:
        ConfigError: naming ``human.port`` if the address cannot be bound.
        RewardLabError: if the server does not start within 30 s.
        StoreError: if the store cannot be opened.
    """

    def __init__(
        self,
        run_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8000,
        overlap: int = 1,
        store_url: str | None = None,
    ) -> None:
        import uvicorn

        from rewardlab.web.app import create_app

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise ConfigError(
                f"human.port: cannot listen on {host}:{port} ({err.strerror}); choose "
                "another with --set human.port=N (0: any free port)"
            ) from None
        self.sock = sock
        self.host, self.port = host, int(sock.getsockname()[1])
        self.app = create_app(Path(run_dir), overlap=overlap, store_url=store_url)
        # log_config=None: an embedded server must not reconfigure the process's logging
        # (uvicorn's dictConfig closes every existing handler, e.g. absl's, which JAX installs,
        # closes the stream it was given when that is no longer sys.stderr).
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False,
                           log_config=None)
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="rewardlab-annotate",
            daemon=True,
        )
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                self.close()
                raise RewardLabError("the annotation web app did not start within 30 s")
            time.sleep(0.02)
        if not self.server.started:
            self.sock.close()
            raise RewardLabError("the annotation web app failed to start (see the log above)")

    def prefetch(self, segment_ids: list[int], store: FeedbackStore) -> None:
        """Queue renders of these segments' clips (control segments with render states; text
        segments have none), ahead of people.

        Raises:
            StoreError: if the segments cannot be read.
            RuntimeError: if the clip cache is closed.
        """
        kinds = store.records.segment_kinds(segment_ids)
        found = store.records.get_segments(
            [i for i, kind in zip(segment_ids, kinds, strict=True) if kind == "control"]
        )
        segments = [s for s in found if s.render_states is not None]
        if segments:
            self.app.state.clips.prefetch(segments)

    def close(self) -> None:
        """Stop serving (waits up to 10 s for open requests) and release the socket."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
