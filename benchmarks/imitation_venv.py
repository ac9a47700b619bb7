"""The imitation 1.0.1 virtualenv shared by the benchmarks that run imitation side by side.

imitation 1.0.1 pins gymnasium~=0.29 and stable-baselines3~=2.2, which conflict with RewardLab's,
so a benchmark runs imitation's side in its own virtualenv (``benchmarks/.venv-imitation``,
git-ignored, created on first use: ``torch==TORCH_VERSION`` first so pip keeps the CPU build,
then ``imitation==IMITATION_VERSION``, then ``MUJOCO_EXTRAS`` for its MuJoCo envs) as a
subprocess of the benchmark script itself (``--side imitation``) whose last stdout line is its
result as JSON. :func:`ensure_venv` and :func:`run_side` serve every such side virtualenv
(also d3rlpy's, ``benchmarks/d3rlpy_crosscheck.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

IMITATION_VERSION = "1.0.1"
TORCH_VERSION = "2.13.0"
IMITATION_VENV = Path(__file__).resolve().parent / ".venv-imitation"
#: MuJoCo for imitation's gymnasium 0.29 (HalfCheetah-v4); a MuJoCo release of its time.
MUJOCO_EXTRAS = ("gymnasium[mujoco]==0.29.1", "mujoco==3.1.6")

#: One BLAS/OpenMP thread in every side process (torch threads are set by the side itself).
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "OPENBLAS_NUM_THREADS": "1"}


def venv_python(venv: Path) -> Path:
    """The python executable of ``venv``."""
    return venv / "bin" / "python"


def ensure_venv(venv: Path, installs: list[list[str]], probe: str, version: str) -> Path:
    """Create ``venv`` and pip-install ``installs`` in order (one pip call each), unless
    ``probe`` (Python code printing the wanted package's version first) already prints
    ``version`` there.

    Returns:
        The venv's python executable.

    Raises:
        subprocess.CalledProcessError: if venv creation or an install fails.
    """
    py = venv_python(venv)
    if py.exists():
        check = subprocess.run([str(py), "-c", probe], capture_output=True, text=True,
                               check=False)
        if check.returncode == 0 and check.stdout.split()[:1] == [version]:
            return py
    print(f"setting up {venv} ({'; '.join(' '.join(i) for i in installs)})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for packages in installs:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
    return py


def ensure_imitation_venv(venv: Path = IMITATION_VENV) -> Path:
    """Create ``venv`` with ``torch==TORCH_VERSION``, ``imitation==IMITATION_VERSION`` and
    ``MUJOCO_EXTRAS``.

    torch is installed first so pip keeps the CPU build instead of pulling a CUDA one. Nothing
    is done when imitation (at the right version) and mujoco already import there.

    Returns:
        The venv's python executable.

    Raises:
        subprocess.CalledProcessError: if venv creation or an install fails.
    """
    return ensure_venv(venv, [[f"torch=={TORCH_VERSION}"], [f"imitation=={IMITATION_VERSION}"],
                              list(MUJOCO_EXTRAS)],
                       "import imitation, torch, mujoco; print(imitation.__version__, "
                       "torch.__version__)", IMITATION_VERSION)


def run_side(py: Path | str, script: Path, args: list[str], what: str,
             log: Path | None = None) -> dict[str, Any]:
    """Run ``script`` with ``args`` under interpreter ``py``; return its last stdout line as JSON.

    The child gets one BLAS/OpenMP thread and an empty ``PYTHONPATH`` (so the imitation venv
    never sees RewardLab's packages).

    Args:
        py: python executable (the imitation venv's, or ``sys.executable``).
        script: the benchmark script, run with ``--side ...`` arguments in ``args``.
        args: command-line arguments after the script path.
        what: name of the side, for the error message.
        log: if given, the child's stderr is appended there (progress, warnings).

    Raises:
        RuntimeError: if the child exits non-zero (with the tail of its stderr).
    """
    cmd = [str(py), str(script), *args]
    env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONPATH": ""}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out.stderr}\n")
    if out.returncode != 0:
        raise RuntimeError(f"{what} side failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
