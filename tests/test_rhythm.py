"""`tempo` and `beats`: librosa.beat.beat_track's numbers through the CLI, blocks = whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from scripts.eval_tempo import accuracies, drum_pattern, f_measure
from tests.conftest import NO_SHARED_DATA, SHARED_DATA, run_json, write_audio

SR = 22050


def rhythm_rows(out: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    names = {r["file_id"]: Path(r["path"]).stem for r in ds.dataset(out / "files").to_table().to_pylist()}
    tempo = {names[r["file_id"]]: r for r in ds.dataset(out / "tempo").to_table().to_pylist()}
    beats: dict[str, list] = {name: [] for name in names.values()}
    for r in sorted(ds.dataset(out / "beats").to_table().to_pylist(), key=lambda r: r["beat"]):
        beats[names[r["file_id"]]].append((r["frame"], r["time_s"]))
    return tempo, {k: np.array(v).reshape(-1, 2) for k, v in beats.items()}


def test_tempo_and_beats_equal_librosa_beat_track(tmp_path):
    import librosa
    rng = np.random.default_rng(5)
    root = tmp_path / "in"
    truth = {}
    for bpm in (72.0, 104.0, 138.0):
        y, beats = drum_pattern(bpm, 20.0, rng)
        write_audio(root / f"drums{bpm:.0f}.wav", y[:, None], SR)
        truth[f"drums{bpm:.0f}"] = (bpm, beats)
    write_audio(root / "silence.wav", np.zeros((SR * 3, 1), dtype=np.float32), SR)
    results = []
    for block_seconds in (3600, 1.3):
        out = tmp_path / f"out{block_seconds}"
        code, summary, err = run_json(
            "extract", str(root), "-o", str(out), "-x", "tempo,beats", "--set", f"audio.block_seconds={block_seconds}"
        )
        assert code == 0, err
        results.append(rhythm_rows(out))
    (tempo, beats), (tempo_blocks, beats_blocks) = results
    for name, (bpm, annotated) in truth.items():
        y, _ = librosa.load(str(root / f"{name}.wav"), sr=SR)
        ref_bpm, ref_frames = librosa.beat.beat_track(y=y, sr=SR)
        assert tempo[name]["bpm"] == pytest.approx(float(np.atleast_1d(ref_bpm)[0]), rel=1e-9)
        assert 0 < tempo[name]["confidence"] <= 1
        assert np.array_equal(beats[name][:, 0].astype(int), ref_frames)
        assert np.allclose(beats[name][:, 1], ref_frames * 512 / SR)
        # and they are right: the generated patterns' tempo and beats
        assert accuracies(tempo[name]["bpm"], bpm)[0]
        assert f_measure(beats[name][:, 1], annotated) > 0.9
        assert tempo_blocks[name] == tempo[name] and np.array_equal(beats_blocks[name], beats[name])
    assert tempo["silence"]["bpm"] == 0.0 and beats["silence"].size == 0  # librosa: no onsets, no tempo


def test_rhythm_parameters_are_checked(tmp_path):
    path = write_audio(tmp_path / "in" / "a.wav", np.zeros((SR, 1), dtype=np.float32), SR)
    for bad in ("tempo.start_bpm=0", "beats.tightness=-1", "tempo.ac_size=0.01", "beats.max_tempo=0"):
        code, _, err = run_json("extract", str(path), "-o", str(tmp_path / "out"), "-x", "tempo,beats", "--set", bad)
        assert code == 2, (bad, err)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "madmom").is_dir(), reason=NO_SHARED_DATA)
def test_madmom_sample_matches_librosa(tmp_path):
    import librosa
    path = SHARED_DATA / "madmom" / "tests" / "data" / "audio" / "sample.wav"
    out = tmp_path / "out"
    code, _, err = run_json("extract", str(path), "-o", str(out), "-x", "tempo,beats")
    assert code == 0, err
    tempo, beats = rhythm_rows(out)
    y, _ = librosa.load(str(path), sr=SR)
    ref_bpm, ref_frames = librosa.beat.beat_track(y=y, sr=SR)
    assert tempo["sample"]["bpm"] == pytest.approx(float(np.atleast_1d(ref_bpm)[0]))
    assert np.array_equal(beats["sample"][:, 0].astype(int), ref_frames)
