"""Render stored segments to short looped video clips for a person to label.

A person labels *clips*, not observation vectors: Christiano et al. 2017 ("Deep reinforcement
learning from human preferences", Sec. 2.2 and App. B) show annotators pairs of 1-2 second video
clips of the agent's behaviour. For MuJoCo environments a :class:`~rewardlab.types.Segment`
carries ``render_states``, the ``concat(qpos, qvel)`` simulator state at each of its ``T`` steps
(the state the step's action was taken in), from which the segment is re-rendered here: frame
``t`` shows ``render_states[t]``. At the default 25 frames per second a 50-step segment is a
2 second clip.

Three layers:

* :func:`render_segment_frames`: states -> ``(T, height, width, 3)`` uint8 RGB frames.
* :func:`encode_mp4`: frames -> an H.264 / yuv420p MP4 with ``+faststart``, which Chromium (and
  every mainstream browser) plays in a ``<video loop>`` element and can start before the file has
  fully loaded. Encoded with the ffmpeg binary that ships with ``imageio-ffmpeg`` (no PyAV).
* :class:`ClipCache`: ``directory/segment-<id>.mp4`` files rendered once each, on one background
  worker thread that owns (and reuses) one render env per environment id.

Offscreen rendering backend: rendering uses MuJoCo's EGL backend (``MUJOCO_GL=egl``), which runs
headless, on CPU through Mesa when there is no GPU. ``MUJOCO_GL`` must be set before MuJoCo
creates a GL context: Gymnasium's offscreen viewer reads it when an env's first ``render()``
creates the context (and ``mujoco.GLContext`` is chosen when ``mujoco`` is first imported). So
that ``import rewardlab`` stays free of side effects, this module does not touch the environment
at import time; :func:`render_segment_frames` and :class:`ClipCache` call
``os.environ.setdefault("MUJOCO_GL", "egl")`` just before they make their first render env. This
works even when ``mujoco`` was already imported without ``MUJOCO_GL`` (checked with Gymnasium 1.4
and MuJoCo 4.0), as long as no other OpenGL platform was set up in the process before (the EGL
backend needs ``PYOPENGL_PLATFORM`` unset or ``"egl"``). A value the user set (e.g.
``MUJOCO_GL=osmesa``) is respected.

Nothing here imports torch.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import RecordError
from rewardlab.types import Segment

__all__ = ["ClipCache", "encode_mp4", "render_segment_frames"]

#: Offscreen OpenGL backend set (unless the user chose one) before a render env is made.
DEFAULT_MUJOCO_GL = "egl"


def _ensure_gl_backend() -> None:
    """Choose MuJoCo's headless EGL backend unless ``MUJOCO_GL`` is already set.

    Must run before MuJoCo creates its first GL context in this process (see the module
    docstring); it is called at call time, never at import time.
    """
    os.environ.setdefault("MUJOCO_GL", DEFAULT_MUJOCO_GL)


def _check_size(width: int, height: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be an integer number of pixels >= 1, got {value!r}")
    return int(width), int(height)


def _make_render_env(
    env_id: str, width: int, height: int, env_kwargs: dict[str, Any] | None = None
) -> Any:
    """Make ``env_id`` to render ``width`` x ``height`` pixel RGB frames; reset it once (seed 0).

    Raises:
        RecordError: naming ``env_id`` if the env cannot be made for rendering or is not a
            MuJoCo env (its unwrapped env has no ``set_state``).
    """
    _ensure_gl_backend()
    import gymnasium as gym

    kwargs = {**(env_kwargs or {}), "render_mode": "rgb_array", "width": width, "height": height}
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as exc:  # e.g. CartPole's constructor rejects width/height
        raise RecordError(
            f"env_id: cannot make {env_id!r} with render_mode='rgb_array', width and height "
            f"({exc}); clips can only be rendered for MuJoCo envs (gymnasium MujocoEnv)"
        ) from exc
    except gym.error.Error as exc:
        raise RecordError(f"env_id: cannot make {env_id!r} for rendering: {exc}") from exc
    base = env.unwrapped
    if not callable(getattr(base, "set_state", None)) or not hasattr(base, "model"):
        env.close()
        raise RecordError(
            f"env_id: {env_id!r} is not a MuJoCo env (its unwrapped env "
            f"{type(base).__name__} has no set_state/model); clips can only be rendered from "
            "render_states of MuJoCo envs"
        )
    env.reset(seed=0)
    return env


def _state_dims(env: Any) -> tuple[int, int]:
    model = env.unwrapped.model
    return int(model.nq), int(model.nv)


def _check_states(env_id: str, render_states: np.ndarray, nq: int, nv: int) -> np.ndarray:
    """Return ``render_states`` as float64 ``(T, nq + nv)`` or raise a RecordError naming it."""
    states = np.asarray(render_states)
    if states.ndim != 2:
        raise RecordError(
            f"render_states: expected a 2-D (T, nq + nv) array, got shape {states.shape}"
        )
    if states.shape[0] < 1:
        raise RecordError("render_states: a clip needs at least one step (T >= 1)")
    if states.shape[1] != nq + nv:
        raise RecordError(
            f"render_states: expected width nq + nv = {nq} + {nv} = {nq + nv} for {env_id!r} "
            f"(concat(qpos, qvel)), got shape {states.shape}"
        )
    if states.dtype.kind not in "fiu":
        raise RecordError(f"render_states: expected a real float array, got dtype {states.dtype}")
    states = states.astype(np.float64, copy=False)
    if not np.all(np.isfinite(states)):
        raise RecordError("render_states: contains NaN or infinite values")
    return states


def _render_with_env(env: Any, env_id: str, render_states: np.ndarray) -> np.ndarray:
    """Render each state with an already made and reset env; see :func:`render_segment_frames`."""
    nq, nv = _state_dims(env)
    states = _check_states(env_id, render_states, nq, nv)
    base = env.unwrapped
    # Gymnasium only makes a viewer's GL context current when an env has several viewers. With
    # several envs in one thread (ClipCache's worker), the last *created* context stays current,
    # and rendering another env through it draws the wrong scene: make this env's current.
    viewer = getattr(getattr(base, "mujoco_renderer", None), "viewer", None)
    if viewer is not None and hasattr(viewer, "make_context_current"):
        viewer.make_context_current()
    frames: list[np.ndarray] = []
    for state in states:
        base.set_state(state[:nq], state[nq:])
        frame = env.render()
        if frame is None:
            raise RuntimeError(f"{env_id!r}: render() returned None; expected rgb_array frames")
        frames.append(np.asarray(frame, dtype=np.uint8))
    return np.stack(frames)


def render_segment_frames(
    env_id: str,
    render_states: np.ndarray,
    width: int = 320,
    height: int = 240,
    env_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Render a MuJoCo segment's simulator states to RGB frames, one frame per step.

    Makes ``env_id`` with ``render_mode="rgb_array"`` (headless EGL unless ``MUJOCO_GL`` says
    otherwise; ``MUJOCO_GL`` is set here, before the env is made), resets it once with seed 0,
    then for each step ``t`` calls ``env.unwrapped.set_state(qpos_t, qvel_t)`` (which runs
    ``mj_forward``) and ``env.render()`` with the env's default camera. The env is closed after.
    A person labels these frames as a clip (Christiano et al. 2017 show 1-2 s clips).

    Args:
        env_id: Gymnasium id of a MuJoCo env, e.g. ``"Reacher-v5"``.
        render_states: ``(T, nq + nv)`` float array, ``concat(qpos, qvel)`` at each step (the
            state the step's action was taken in), as in ``Segment.render_states``.
        width: frame width in pixels.
        height: frame height in pixels.
        env_kwargs: extra keyword arguments of ``gym.make`` (e.g. a custom ``xml_file``);
            ``render_mode``, ``width`` and ``height`` are set by this function.

    Returns:
        ``(T, height, width, 3)`` uint8 RGB frames; frame ``t`` shows ``render_states[t]``.

    Raises:
        RecordError: naming ``render_states`` if it is not 2-D, is empty, has width other than
            ``nq + nv`` of the env, or holds non-finite values; naming ``env_id`` if the env
            cannot be made for rendering or is not a MuJoCo env (no ``set_state``).
        ValueError: if ``width`` or ``height`` is not a positive integer.
    """
    width, height = _check_size(width, height)
    states = np.asarray(render_states)
    if states.ndim != 2:  # fail before paying for an env
        raise RecordError(
            f"render_states: expected a 2-D (T, nq + nv) array, got shape {states.shape}"
        )
    env = _make_render_env(env_id, width, height, env_kwargs)
    try:
        return _render_with_env(env, env_id, states)
    finally:
        env.close()


def _even_pad(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by one edge-replicated row/column (yuv420p needs even sizes)."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if not pad_h and not pad_w:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def encode_mp4(frames: np.ndarray, path: str | Path, fps: int = 25) -> Path:
    """Encode RGB frames to an H.264 MP4 a browser plays, written atomically.

    The video is H.264 (``libx264``, the ffmpeg binary of ``imageio-ffmpeg``) in ``yuv420p``, the
    pixel format browsers decode, with ``-movflags +faststart`` (the index is at the start, so
    playback starts before the whole file has loaded). yuv420p needs an even width and height: an
    odd size is padded by one edge-replicated pixel row/column (never rescaled). The file is
    written to a temporary name in the same directory and then moved into place with
    :func:`os.replace`, so a reader (e.g. the labelling web page) never sees a partial clip and
    concurrent writers of the same clip do not corrupt it.

    Args:
        frames: ``(T, height, width, 3)`` uint8 RGB frames, ``T >= 1``.
        path: the ``.mp4`` file to write; its directory must exist. Replaced if present.
        fps: frames per second of playback (25: a 50-step segment plays for 2 s). Real time
            would be ``1 / env.unwrapped.dt`` (e.g. 50 for Reacher-v5, 20 for HalfCheetah-v5).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        RecordError: naming ``frames`` if it is not a ``(T, H, W, 3)`` uint8 array with
            ``T >= 1``.
        ValueError: if ``fps`` is not a positive integer.
        OSError: if ffmpeg fails or the file cannot be written (no partial file is left).
    """
    import imageio.v2 as iio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3], default=0) < 1:
        raise RecordError(f"frames: expected a (T, H, W, 3) array with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise RecordError(f"frames: expected dtype uint8, got {frames.dtype}")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"fps: must be an integer >= 1, got {fps!r}")
    frames = _even_pad(frames)
    path = Path(path)
    # The temporary name keeps the .mp4 suffix: ffmpeg picks the container from it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp.mp4")
    try:
        writer = iio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=int(fps),
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=2,  # sizes are even already: never let imageio rescale
            output_params=["-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class ClipCache:
    """MP4 clips of stored segments, rendered once each on one background worker thread.

    The clip of segment ``i`` is ``directory/segment-<i>.mp4``; an existing file is reused, never
    re-rendered. Renders run on a ``ThreadPoolExecutor(max_workers=1)``: MuJoCo's GL contexts are
    per thread, so the single worker thread owns every render env (one per env id, made on first
    use and reused for later clips) and closes them in :meth:`close`; callers never touch a GL
    context. Rendering from that worker with EGL is supported (checked on CPU / Mesa). A segment
    queued or rendering is never rendered twice concurrently: a second request waits for the
    first render. (Separate processes sharing a directory may render the same clip twice; the
    atomic write of :func:`encode_mp4` keeps the file whole.)

    Use as a context manager, or call :meth:`close`.

    Args:
        directory: where clips are stored; created if missing.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: playback frames per second (25: a 50-step segment is a 2 s clip).
        env_kwargs: extra keyword arguments of ``gym.make`` for the render envs.

    Raises:
        ValueError: if ``width``, ``height`` or ``fps`` is not a positive integer.
    """

    def __init__(
        self,
        directory: str | Path,
        width: int = 320,
        height: int = 240,
        fps: int = 25,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.width, self.height = _check_size(width, height)
        if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
            raise ValueError(f"fps: must be an integer >= 1, got {fps!r}")
        self.fps = int(fps)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._env_kwargs = dict(env_kwargs or {})
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardlab-clips")
        self._lock = threading.Lock()
        self._futures: dict[int, Future[Any]] = {}
        self._envs: dict[str, Any] = {}  # touched only by the worker thread
        self._closed = False

    # -- paths ------------------------------------------------------------------------------

    def path_for(self, segment_id: int) -> Path:
        """The clip file of segment ``segment_id``: ``directory/segment-<id>.mp4``."""
        return self.directory / f"segment-{int(segment_id)}.mp4"

    # -- rendering --------------------------------------------------------------------------

    def get_or_render(self, segment: Segment, timeout: float | None = None) -> Path:
        """The clip of ``segment``, rendered (on the worker) and encoded if not cached yet.

        Args:
            segment: a stored segment (``segment_id`` set) with ``render_states``.
            timeout: seconds to wait for the render; ``None`` waits as long as it takes.

        Returns:
            The path of the MP4 file (see :meth:`path_for`).

        Raises:
            RecordError: if ``segment_id`` or ``render_states`` is missing, or (from the worker)
                if ``render_states`` does not fit the env or ``env_id`` is not a MuJoCo env.
            TimeoutError: if the render did not finish within ``timeout`` (it continues).
            RuntimeError: if the cache is closed and the clip is not cached.
        """
        segment_id = self._check_segment(segment)
        path = self.path_for(segment_id)
        if path.exists():
            return path
        return self._submit(segment, segment_id).result(timeout)

    def prefetch(self, segments: Iterable[Segment]) -> None:
        """Queue renders of the segments not cached yet, in order; returns at once.

        Errors of a render are raised later, by :meth:`wait` or :meth:`get_or_render`.

        Raises:
            RecordError: at once, if a segment has no ``segment_id`` or no ``render_states``.
            RuntimeError: if the cache is closed.
        """
        for segment in segments:
            segment_id = self._check_segment(segment)
            if not self.path_for(segment_id).exists():
                self._submit(segment, segment_id)

    def wait(self, segment_id: int, timeout: float | None = None) -> Path:
        """Wait for the queued or running render of ``segment_id`` and return its clip path.

        Args:
            segment_id: the segment's database id.
            timeout: seconds to wait; ``None`` waits as long as it takes.

        Raises:
            KeyError: if the clip is neither cached nor queued.
            TimeoutError: if the render did not finish within ``timeout``.
            RecordError: if the render failed on the segment's data (see :meth:`get_or_render`).
            concurrent.futures.CancelledError: if :meth:`close` cancelled the queued render.
        """
        with self._lock:
            future = self._futures.get(int(segment_id))
        if future is None:
            path = self.path_for(segment_id)
            if path.exists():
                return path
            raise KeyError(f"segment {segment_id}: clip is neither cached nor queued")
        return future.result(timeout)

    def render_frames(self, segment: Segment, timeout: float | None = None) -> np.ndarray:
        """Render ``segment`` to ``(T, height, width, 3)`` uint8 frames on the worker (no file).

        Uses the worker's cached env for ``segment.env_id``, exactly as clips are rendered.

        Raises:
            RecordError: as :meth:`get_or_render` (``segment_id`` may be ``None`` here).
            RuntimeError: if the cache is closed.
        """
        self._check_segment(segment, need_id=False)
        with self._lock:
            self._check_open()
            future = self._executor.submit(self._frames_in_worker, segment)
        return future.result(timeout)

    def close(self) -> None:
        """Cancel queued renders, finish the running one, close the envs and stop the worker.

        Idempotent. Cached clips stay on disk; :meth:`path_for` and cached
        :meth:`get_or_render` calls still work afterwards.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for future in self._futures.values():
                future.cancel()
            # Envs hold GL contexts of the worker thread: free them there.
            self._executor.submit(self._close_envs_in_worker)
        self._executor.shutdown(wait=True)

    def __enter__(self) -> ClipCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _check_segment(segment: Segment, need_id: bool = True) -> int:
        if need_id and segment.segment_id is None:
            raise RecordError("Segment.segment_id: a clip is cached by segment id; store it first")
        if segment.render_states is None:
            raise RecordError(
                f"Segment.render_states: segment {segment.segment_id} has none, so it cannot be "
                "rendered (record them with record_render_states for a MuJoCo env)"
            )
        return -1 if segment.segment_id is None else int(segment.segment_id)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ClipCache is closed")

    def _submit(self, segment: Segment, segment_id: int) -> Future[Any]:
        with self._lock:
            future = self._futures.get(segment_id)
            # Reuse a queued, running or successful render; retry a failed or cancelled one.
            if future is not None and not future.cancelled():
                if not future.done() or (
                    future.exception() is None and self.path_for(segment_id).exists()
                ):
                    return future
            self._check_open()
            future = self._executor.submit(self._render_in_worker, segment, segment_id)
            self._futures[segment_id] = future
            return future

    def _env_in_worker(self, env_id: str) -> Any:
        env = self._envs.get(env_id)
        if env is None:
            env = _make_render_env(env_id, self.width, self.height, self._env_kwargs)
            self._envs[env_id] = env
        return env

    def _frames_in_worker(self, segment: Segment) -> np.ndarray:
        env = self._env_in_worker(segment.env_id)
        return _render_with_env(env, segment.env_id, segment.render_states)

    def _render_in_worker(self, segment: Segment, segment_id: int) -> Path:
        path = self.path_for(segment_id)
        if path.exists():  # e.g. rendered by another process meanwhile
            return path
        return encode_mp4(self._frames_in_worker(segment), path, fps=self.fps)

    def _close_envs_in_worker(self) -> None:
        envs, self._envs = list(self._envs.values()), {}
        for env in envs:
            env.close()
