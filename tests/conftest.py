"""Shared test setup: one torch thread (CI has 2 cores), offline."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# The language-model tests build their tiny models locally: never reach the Hugging Face Hub
# (set before transformers/huggingface_hub are first imported, which read these at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
