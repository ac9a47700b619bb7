"""Store fixtures: a throwaway PostgreSQL server and a ``store`` on both backends.

``pg_server`` starts its own server from the Debian ``postgresql`` package binaries
(``/usr/lib/postgresql/<version>/bin``) in a temporary directory, listening on a free TCP
port of 127.0.0.1 only, with ``trust`` authentication for the ``rewardlab`` superuser. When
the tests run as root (CI), the server runs as the ``postgres`` system user through
``runuser``, since PostgreSQL refuses to run as root. It is started once per session, the
first time a test needs it, and stopped (its directory removed) when the session ends.
Every PostgreSQL test gets a fresh database. Without the server binaries (or the psycopg
driver) the PostgreSQL tests are skipped.

``store`` (and ``store_url``) are parametrized over ``sqlite`` and ``postgresql``, so every
test taking them runs on both backends.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import URL

from rewardlab.store import DB_FILENAME, FeedbackStore

if TYPE_CHECKING:
    import psycopg

PG_USER = "rewardlab"
BACKENDS = ["sqlite", "postgresql"]
_db_numbers = itertools.count()


@dataclass(frozen=True)
class PgServer:
    """A running throwaway server: connect as ``rewardlab`` to 127.0.0.1:``port``."""

    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_USER,
            dbname=dbname,
            autocommit=autocommit,
            connect_timeout=10,
        )


def _pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = []
    for bindir in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(bindir)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            try:
                version = int(path.parent.name.split(".")[0])
            except ValueError:
                version = 0
            found.append((version, path))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip("psycopg", reason="the psycopg PostgreSQL driver is not installed")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under "
            "/usr/lib/postgresql/*/bin; install the Debian 'postgresql' package"
        )
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as 'postgres'
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        if os.access(runuser, os.X_OK):
            prefix = [runuser, "-u", "postgres", "--"]
        else:
            prefix = ["su", "-s", "/bin/sh", "-c", '"$0" "$@"', "--", "postgres"]

    # Under /tmp (not pytest's 0700 tmp dir) so that the 'postgres' user can reach it.
    root = Path(tempfile.mkdtemp(prefix="rewardlab-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")

    def run(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *map(str, args)],
            cwd=root,  # the 'postgres' user may not be able to enter the current directory
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def fail(what: str, proc: subprocess.CompletedProcess[str]) -> None:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail(
            f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{server_log}",
            pytrace=False,
        )

    pg_ctl = bindir / "pg_ctl"
    try:
        proc = run(
            bindir / "initdb",
            "-D",
            data,
            "--auth=trust",
            "-U",
            PG_USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if proc.returncode != 0:
            fail("initdb", proc)
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            options = (
                f"-k {root} -h 127.0.0.1 -p {port} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=20"
            )
            proc = run(pg_ctl, "-D", data, "-l", log, "-w", "-t", "30", "-o", options, "start")
            if proc.returncode == 0:
                break
            if attempt == 2:
                fail("pg_ctl start", proc)
        yield PgServer(port=port)
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = f"rewardlab_test_{os.getpid()}_{next(_db_numbers)}"
    with pg_server.connect() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with pg_server.connect() as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database: a ``feedback.db`` file, or a PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return URL.create("sqlite", database=str(run_dir.resolve() / DB_FILENAME)).render_as_string()


@pytest.fixture
def store(store_url: str) -> Iterator[FeedbackStore]:
    """An open store on a fresh database, once per backend."""
    with FeedbackStore(store_url) as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[FeedbackStore]:
    """An open SQLite store in the run directory ``tmp_path / "run"``."""
    with FeedbackStore.open(tmp_path / "run") as s:
        yield s
