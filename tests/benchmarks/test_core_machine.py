"""benchmarks/core.py's machine description: the CPU's widest vector extension is named."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("fpu sse2 avx avx2 fma avx512f avx512_bf16", "avx512_bf16"),
        ("fpu sse2 avx avx2 avx512f avx512bw", "avx512f"),
        ("fpu sse2 avx avx2 fma sha_ni", "avx2"),
        ("fpu sse2 avx", "avx"),
        ("fpu sse2", None),
        ("avx512_bf16x", None),  # whole flags only
    ],
)
def test_simd_level_is_the_widest_listed_flag(core, flags, level):
    assert core.simd_level(flags) == level


def test_cpu_model_names_the_model_and_its_extension(core, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2\n")
    real_path = core.Path
    monkeypatch.setattr(core, "Path", lambda p: real_path(cpuinfo if p == "/proc/cpuinfo" else p))
    assert core.cpu_model() == "AMD EPYC (avx2)"
