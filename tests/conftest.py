"""Shared test setup: one torch thread (CI has 2 cores), offline."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

torch.set_num_threads(1)
