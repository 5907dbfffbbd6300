"""The README's "One row per track" example, run on a generated catalogue."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np

from scripts.eval_tempo import drum_pattern
from tests.conftest import REPO, run_json, write_audio

SR = 22050


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- one-row-per-track -->\s*```python\n(.*?)```\s*<!-- /one-row-per-track -->", text, re.S)
    assert match, "README lost its one-row-per-track example"
    return match.group(1)


def test_readme_finds_the_loudest_and_the_fastest_tracks(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "music"
    levels = {"quiet": 0.05, "middle": 0.2, "loud": 0.9}
    tempi = {"quiet": 90.0, "middle": 150.0, "loud": 120.0}
    for name, gain in levels.items():
        y, _ = drum_pattern(tempi[name], 12.0, rng)
        stereo = np.stack([y, 0.8 * y], axis=1) * (gain / 0.3)
        write_audio(root / f"{name}.flac", stereo.astype(np.float32), SR)
    out = tmp_path / "catalogue-out"
    code, summary, err = run_json(
        "extract", str(root), "-o", str(out), "-x", "mfcc,spectral,chroma,loudness,tempo,segments,summary"
    )
    assert code == 0, err
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(readme_block().replace('"catalogue-out"', repr(str(out))), namespace)
    assert namespace["loudest"].relpath.tolist() == ["loud.flac", "middle.flac", "quiet.flac"]
    assert namespace["clipping"] == ["loud.flac"]
    assert namespace["fastest"].relpath.iloc[0] == "middle.flac"
    assert abs(namespace["fastest"].bpm.iloc[0] - 150.0) <= 0.04 * 150.0
    share = namespace["speech_share"]
    assert set(share.index) == {f"{name}.flac" for name in levels} and ((share >= 0) & (share <= 1)).all()
    assert "loud.flac" in printed.getvalue()  # DuckDB's table, loudest first
