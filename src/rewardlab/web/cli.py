"""Command functions of ``rewardlab annotators add`` and ``rewardlab annotate``.

They are wired into the argparse CLI by :mod:`rewardlab.cli.main`; errors derive from
:class:`rewardlab.errors.RewardLabError` so the CLI prints them as one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from rewardlab.errors import RunDirError
from rewardlab.feedback.human import login_link
from rewardlab.store import DB_FILENAME, FeedbackStore


def _check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    if not (run_dir / DB_FILENAME).is_file():
        raise RunDirError(f"run directory {run_dir} has no feedback store ({DB_FILENAME})")
    return run_dir


def add_annotator_command(run_dir: Path, name: str, host: str, port: int) -> str:
    """Add an annotator to a run and return their login link (the token is shown only here).

    Args:
        run_dir: the run directory (must hold ``feedback.db``).
        name: the annotator's unique name (their ``teacher_id``); see
            :func:`rewardlab.types.check_annotator_name` for the rules.
        host: host the app will be served on, for the link.
        port: port the app will be served on, for the link.

    Returns:
        ``http://HOST:PORT/?token=...``.

    Raises:
        RunDirError: if ``run_dir`` is not a run directory with a feedback store.
        InvalidNameError: if the name breaks the rules (e.g. a scripted teacher's id, or a
            control character).
        DuplicateAnnotatorError: if the name is taken.
        StoreError: if the store cannot be written.
    """
    run_dir = _check_run_dir(run_dir)
    with FeedbackStore.open(run_dir) as store:
        _, token = store.annotation.add_annotator(name)
    return login_link(host, port, token)


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, overlap: int = 1) -> None:
    """Serve the annotation app of a run with uvicorn until interrupted.

    Raises:
        RunDirError: if ``run_dir`` is not a run directory with a feedback store.
        StoreError: if the store cannot be opened.
        ValueError: if ``overlap`` is not an integer >= 1.
    """
    import uvicorn

    from rewardlab.web.app import create_app

    app = create_app(_check_run_dir(run_dir), overlap=overlap)
    uvicorn.run(app, host=host, port=int(port), log_level="info")
