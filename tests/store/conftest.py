"""Store fixtures: a PostgreSQL server and a ``store`` on both backends.

``pg_server`` is the server named by ``REWARDLAB_POSTGRES_URL`` when that is set (a SQLAlchemy
URL such as ``postgresql+psycopg://rewardlab:secret@127.0.0.1:5432/rewardlab``, whose role may
create databases; ``.ci/run`` starts one and sets it). Otherwise it starts its own throwaway
server from the Debian ``postgresql`` package binaries (``/usr/lib/postgresql/<version>/bin``)
in a temporary directory, listening on a free TCP port of 127.0.0.1 only, with ``trust``
authentication for the ``rewardlab`` superuser. When the tests run as root, that server runs
as the ``postgres`` system user through ``runuser``, since PostgreSQL refuses to run as root.
It is started once per session, the first time a test needs it, and stopped (its directory
removed) when the session ends.
Every PostgreSQL test gets a fresh database. Without the server binaries (or the psycopg
driver) the PostgreSQL tests are skipped, unless ``REWARDLAB_REQUIRE_POSTGRES`` is set (as in
``.ci/run``): then they fail, so CI cannot pass without having run them.

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
from typing import TYPE_CHECKING, NoReturn

import pytest
from sqlalchemy.engine import URL, make_url

from rewardlab.store import DB_FILENAME, FeedbackStore

if TYPE_CHECKING:
    import psycopg

PG_USER = "rewardlab"
BACKENDS = ["sqlite", "postgresql"]
#: A server to use instead of starting one (see the module docstring).
URL_VARIABLE = "REWARDLAB_POSTGRES_URL"
#: Set (to anything) to make a missing PostgreSQL fail the tests instead of skipping them.
REQUIRE_VARIABLE = "REWARDLAB_REQUIRE_POSTGRES"
REQUIRED = bool(os.environ.get(REQUIRE_VARIABLE))
_db_numbers = itertools.count()


def _skip(reason: str) -> NoReturn:
    """Skip, or fail when ``REWARDLAB_REQUIRE_POSTGRES`` is set."""
    if REQUIRED:
        pytest.fail(f"{REQUIRE_VARIABLE} is set but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class PgServer:
    """A running server: connect as ``user`` to ``host``:``port`` (``admin_db`` to manage)."""

    port: int
    host: str = "127.0.0.1"
    user: str = PG_USER
    password: str | None = None
    admin_db: str = "postgres"

    def url(self, dbname: str) -> str:
        return URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=dbname,
        ).render_as_string(hide_password=False)

    def connect(self, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.admin_db,
            autocommit=autocommit,
            connect_timeout=10,
        )


def _external_server(url: str) -> PgServer:
    """The server of ``REWARDLAB_POSTGRES_URL``, checked to be reachable."""
    import psycopg

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.username:
        pytest.fail(f"{URL_VARIABLE}: expected postgresql+psycopg://USER[:PASSWORD]@HOST:PORT/DB")
    server = PgServer(
        port=parsed.port or 5432,
        host=parsed.host or "127.0.0.1",
        user=parsed.username,
        password=parsed.password,
        admin_db=parsed.database or "postgres",
    )
    try:
        server.connect().close()
    except psycopg.Error as err:
        _skip(f"the PostgreSQL server of {URL_VARIABLE} is not reachable: {err}")
    return server


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
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip("the psycopg PostgreSQL driver is not installed (pip install -e '.[test]')")
    if os.environ.get(URL_VARIABLE):
        yield _external_server(os.environ[URL_VARIABLE])
        return
    bindir = _pg_bindir()
    if bindir is None:
        _skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under "
            "/usr/lib/postgresql/*/bin; install the Debian 'postgresql' package, or set "
            f"{URL_VARIABLE}"
        )
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as 'postgres'
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _skip("running as root and there is no 'postgres' user to run the server as")
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
