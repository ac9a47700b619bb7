"""Clips of MuJoCo segments: rendering from stored states, MP4 encoding, the clip cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import imageio.v2 as iio
import numpy as np
import pytest

from rewardlab.errors import RecordError
from rewardlab.feedback import clips
from rewardlab.feedback.clips import ClipCache, encode_mp4, render_segment_frames
from rewardlab.types import Segment

pytestmark = pytest.mark.e2e

W, H = 160, 120  # small frames keep the tests fast


def episode_states() -> np.ndarray:
    """(50, nq + nv) float64 states of a Reacher-v5 episode under random actions."""
    env = gym.make("Reacher-v5")
    env.reset(seed=0)
    env.action_space.seed(0)
    states = []
    for _ in range(50):
        data = env.unwrapped.data
        states.append(np.concatenate([data.qpos, data.qvel]))  # the state the action is taken in
        env.step(env.action_space.sample())
    env.close()
    return np.asarray(states, dtype=np.float64)


@pytest.fixture(scope="module")
def reacher_states() -> np.ndarray:
    """:func:`episode_states`, once per module."""
    return episode_states()


def _segment(states: np.ndarray, segment_id: int | None, env_id: str = "Reacher-v5") -> Segment:
    t = states.shape[0]
    return Segment(
        obs=np.zeros((t, 3), np.float32),
        actions=np.zeros((t, 2), np.float32),
        true_rewards=None,
        env_id=env_id,
        episode_id=0,
        start_step=0,
        segment_id=segment_id,
        render_states=states,
    )


def _top_level_boxes(data: bytes) -> list[str]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        boxes.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return boxes


def test_render_frames_follow_the_states(reacher_states):
    states = reacher_states[:20]
    frames = render_segment_frames("Reacher-v5", states, width=W, height=H)
    assert frames.shape == (20, H, W, 3)
    assert frames.dtype == np.uint8
    changed = [not np.array_equal(frames[t], frames[0]) for t in range(1, 20)]
    assert sum(changed) >= 10  # the arm moves

    env = gym.make("Reacher-v5", render_mode="rgb_array", width=W, height=H)
    env.reset(seed=0)
    nq = env.unwrapped.model.nq
    env.unwrapped.set_state(states[0, :nq], states[0, nq:])
    direct = env.render()
    env.close()
    np.testing.assert_array_equal(frames[0], direct)


def test_render_rejects_bad_states_and_non_mujoco_envs(reacher_states):
    with pytest.raises(RecordError, match="render_states"):
        render_segment_frames("Reacher-v5", reacher_states[0], width=W, height=H)
    with pytest.raises(RecordError, match=r"render_states.*nq \+ nv"):
        render_segment_frames("Reacher-v5", reacher_states[:5, :-1], width=W, height=H)
    with pytest.raises(RecordError, match="MuJoCo"):
        render_segment_frames("CartPole-v1", np.zeros((3, 4)), width=W, height=H)


def test_encode_mp4_is_h264_faststart_and_decodes(reacher_states, tmp_path):
    frames = render_segment_frames("Reacher-v5", reacher_states[:20], width=W, height=H)
    path = encode_mp4(frames, tmp_path / "clip.mp4", fps=25)
    assert path == tmp_path / "clip.mp4" and path.is_file()
    assert path.stat().st_size > 1000
    data = path.read_bytes()
    assert data[4:8] == b"ftyp"
    boxes = _top_level_boxes(data)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: index before the media
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left

    reader = iio.get_reader(path, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        decoded = [frame for frame in reader]
    finally:
        reader.close()
    assert meta["codec"] == "h264"
    assert tuple(meta["size"]) == (W, H)
    assert meta["fps"] == pytest.approx(25)
    assert len(decoded) == 20
    assert decoded[0].shape == (H, W, 3)
    # lossy, but close to the source
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 8


def test_encode_mp4_pads_odd_sizes_and_checks_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 31, 41, 3), dtype=np.uint8)
    path = encode_mp4(frames, tmp_path / "odd.mp4", fps=10)
    reader = iio.get_reader(path, format="FFMPEG")
    try:
        assert tuple(reader.get_meta_data()["size"]) == (42, 32)
    finally:
        reader.close()
    with pytest.raises(RecordError, match="frames"):
        encode_mp4(frames.astype(np.float32), tmp_path / "bad.mp4")
    with pytest.raises(RecordError, match="frames"):
        encode_mp4(frames[0], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


def test_clip_cache_renders_once_and_prefetches(reacher_states, tmp_path, monkeypatch):
    encodes = []
    real_encode = clips.encode_mp4

    def counting_encode(frames, path, fps=25):
        encodes.append(os.path.basename(path))
        return real_encode(frames, path, fps)

    monkeypatch.setattr(clips, "encode_mp4", counting_encode)
    with ClipCache(tmp_path / "clips", width=W, height=H, fps=25) as cache:
        seg = _segment(reacher_states[:20], 7)
        path = cache.get_or_render(seg, timeout=60)
        assert path == cache.path_for(7) == tmp_path / "clips" / "segment-7.mp4"
        assert path.stat().st_size > 1000
        mtime = path.stat().st_mtime_ns
        assert cache.get_or_render(seg) == path
        assert path.stat().st_mtime_ns == mtime

        other = _segment(reacher_states[20:40], 8)
        cache.prefetch([other, other])  # duplicates share one render
        assert cache.wait(8, timeout=60) == cache.path_for(8)
        assert cache.get_or_render(other) == cache.path_for(8)
        assert encodes == ["segment-7.mp4", "segment-8.mp4"]
        assert cache.wait(7) == path  # cached

        with pytest.raises(KeyError):
            cache.wait(99)
        bad = _segment(reacher_states[:5, :5], 9)
        with pytest.raises(RecordError, match="render_states"):
            cache.get_or_render(bad, timeout=60)
        cache.prefetch([bad])
        with pytest.raises(RecordError, match="render_states"):
            cache.wait(9, timeout=60)
        assert not cache.path_for(9).exists()
        with pytest.raises(RecordError, match="segment_id"):
            cache.get_or_render(_segment(reacher_states[:5], None))
    with pytest.raises(RuntimeError, match="closed"):
        cache.prefetch([_segment(reacher_states[:5], 10)])
    assert cache.get_or_render(seg) == path  # cached clips still served


def test_clip_cache_switches_gl_context_between_envs(tmp_path):
    # In a fresh process: in the full suite, GL state left by earlier tests in this process made
    # the re-rendered frames black (twice in CI, not reproduced by any subset of the tests).
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        import gymnasium as gym
        import numpy as np
        from test_clips import H, W, _segment, episode_states
        from rewardlab.feedback.clips import ClipCache, render_segment_frames

        states = episode_states()[:3]
        cheetah = gym.make("HalfCheetah-v5")
        cheetah.reset(seed=0)
        data = cheetah.unwrapped.data
        cheetah_states = np.concatenate([data.qpos, data.qvel])[None].repeat(2, axis=0)
        cheetah.close()
        reacher = _segment(states, None)
        with ClipCache({str(tmp_path)!r}, width=W, height=H) as cache:
            cache.render_frames(reacher)
            cache.render_frames(_segment(cheetah_states, None, "HalfCheetah-v5"))  # newest
            again = cache.render_frames(reacher)
        expected = render_segment_frames("Reacher-v5", states, width=W, height=H)
        np.testing.assert_array_equal(again, expected)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_seconds_per_50_step_clip(reacher_states, tmp_path):
    t0 = time.perf_counter()
    frames = render_segment_frames("Reacher-v5", reacher_states, width=320, height=240)
    t1 = time.perf_counter()
    encode_mp4(frames, tmp_path / "fresh.mp4", fps=25)
    t2 = time.perf_counter()
    with ClipCache(tmp_path / "cache", width=320, height=240, fps=25) as cache:
        cache.render_frames(_segment(reacher_states[:1], None))  # make the worker's env
        t3 = time.perf_counter()
        cache.get_or_render(_segment(reacher_states, 1), timeout=120)
        t4 = time.perf_counter()
    print(
        f"\n50-step Reacher-v5 clip at 320x240: fresh env render {t1 - t0:.3f} s + encode "
        f"{t2 - t1:.3f} s = {t2 - t0:.3f} s; ClipCache with a warm env {t4 - t3:.3f} s"
    )
    assert frames.shape == (50, 240, 320, 3)


def test_sets_mujoco_gl_at_call_time_not_import_time():
    script = textwrap.dedent(
        """
        import os
        import rewardlab
        import rewardlab.feedback.clips as clips
        import sys
        assert "MUJOCO_GL" not in os.environ, "import must not set MUJOCO_GL"
        import gymnasium as gym
        import mujoco  # already imported without MUJOCO_GL before the first render
        env = gym.make("Reacher-v5")
        env.reset(seed=0)
        data = env.unwrapped.data
        import numpy as np
        states = np.concatenate([data.qpos, data.qvel])[None].repeat(2, axis=0)
        frames = clips.render_segment_frames("Reacher-v5", states, width=32, height=24)
        assert os.environ["MUJOCO_GL"] == "egl"
        assert frames.shape == (2, 24, 32, 3) and frames.std() > 0
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
