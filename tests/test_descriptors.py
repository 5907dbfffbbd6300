"""Chroma, MFCC deltas, per-file / per-segment summaries: librosa's and numpy's numbers, through
the public API and the CLI, on audio generated in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.conftest import NO_SHARED_DATA, SHARED_DATA, run_json, write_audio

SR = 22050


def chords(sr: int, seconds: float, seed: int = 0, detune_cents: float = 0.0) -> np.ndarray:
    """Triads with harmonics, a new chord every 0.4 s, slightly detuned: `(n,)` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.4):
        part = (t >= start) & (t < start + 0.4)
        root = 220.0 * 2 ** ((rng.integers(0, 12) + detune_cents / 100) / 12)
        for ratio in (1.0, 2 ** (4 / 12), 2 ** (7 / 12)):
            for k in range(1, 4):
                y[part] += np.sin(2 * np.pi * root * ratio * k * t[part]) / k
    y += 0.01 * rng.standard_normal(t.size)
    return (0.1 * y).astype(np.float32)


def frames_of(out: Path, table: str, column: str, relpath: str | None = None) -> np.ndarray:
    files = ds.dataset(out / "files").to_table().to_pylist()
    file_id = next(r["file_id"] for r in files if relpath is None or r["relpath"] == relpath)
    rows = [r for r in ds.dataset(out / table).to_table().to_pylist() if r["file_id"] == file_id]
    rows.sort(key=lambda r: (r["channel"], r["frame"]))
    assert [r["frame"] for r in rows if r["channel"] == 0] == list(range(sum(r["channel"] == 0 for r in rows)))
    return np.array([r[column] for r in rows], dtype=np.float32)


def test_chroma_equals_librosa_and_blocks_equal_whole(tmp_path):
    import librosa
    y = chords(SR, 12.0, detune_cents=20)
    path = write_audio(tmp_path / "in" / "chords.flac", y[:, None], SR)
    y_read, _ = librosa.load(str(path), sr=SR)
    runs = {}
    for block_seconds in (3600, 0.77):
        out = tmp_path / f"out{block_seconds}"
        code, summary, err = run_json(
            "extract", str(path), "-o", str(out), "-x", "chroma", "--set", f"audio.block_seconds={block_seconds}"
        )
        assert code == 0, err
        runs[block_seconds] = frames_of(out, "chroma", "chroma")
    reference = librosa.feature.chroma_stft(y=y_read, sr=SR).T
    assert abs(librosa.estimate_tuning(y=y_read, sr=SR)) > 0.1  # the file's tuning matters here
    assert runs[3600].shape == reference.shape == (reference.shape[0], 12)
    assert np.abs(runs[3600] - reference).max() <= 1e-4 * np.abs(reference).max()
    assert np.array_equal(runs[3600], runs[0.77])


def test_chroma_with_fixed_tuning_and_other_parameters(tmp_path):
    import librosa
    y = chords(16000, 6.0, seed=4)
    path = write_audio(tmp_path / "in" / "c.wav", y[:, None], 16000)
    y_read, _ = librosa.load(str(path), sr=16000)
    out = tmp_path / "out"
    sets = {"sr": 16000, "n_fft": 1024, "hop_length": 256, "tuning": -0.2, "n_chroma": 24, "norm": 2, "octwidth": "none"}
    args = [a for k, v in sets.items() for a in ("--set", f"chroma.{k}={v}")]
    code, _, err = run_json("extract", str(path), "-o", str(out), "-x", "chroma", *args)
    assert code == 0, err
    ours = frames_of(out, "chroma", "chroma")
    reference = librosa.feature.chroma_stft(
        y=y_read, sr=16000, n_fft=1024, hop_length=256, tuning=-0.2, n_chroma=24, norm=2, octwidth=None
    ).T
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize(
    "sets",
    [
        {},  # librosa's defaults: the top_db floor holds rows until the file ends
        {"top_db": "none", "delta_width": 5, "delta_mode": "nearest", "n_mfcc": 13},  # rows stream
    ],
)
def test_mfcc_deltas_equal_librosa_across_block_edges(tmp_path, sets):
    import librosa
    y = chords(SR, 9.0, seed=2)
    path = write_audio(tmp_path / "in" / "d.flac", np.stack([y, 0.5 * y[::-1]], axis=1), SR)
    stereo, _ = librosa.load(str(path), sr=SR, mono=False)
    params = {"n_mfcc": 20, "top_db": 80.0, "delta_width": 9, "delta_mode": "interp", **sets}
    top_db = None if params["top_db"] == "none" else params["top_db"]
    columns = {}
    for block_seconds in (3600, 0.3):
        out = tmp_path / f"out{block_seconds}"
        args = [a for k, v in {"deltas": 2, **sets}.items() for a in ("--set", f"mfcc.{k}={v}")]
        code, _, err = run_json(
            "extract", str(path), "-o", str(out), "-x", "mfcc", "--set", "audio.channels=each",
            "--set", f"audio.block_seconds={block_seconds}", *args,
        )
        assert code == 0, err
        columns[block_seconds] = {c: frames_of(out, "mfcc", c) for c in ("mfcc", "mfcc_delta", "mfcc_delta2")}
    for name in ("mfcc", "mfcc_delta", "mfcc_delta2"):
        assert np.array_equal(columns[3600][name], columns[0.3][name]), name
    # Both channels in one librosa call, as audiokit floors them: top_db below the file's peak.
    log_mel = librosa.power_to_db(librosa.feature.melspectrogram(y=stereo, sr=SR), top_db=top_db)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=params["n_mfcc"])  # (2, n_mfcc, frames)
    width, mode = params["delta_width"], params["delta_mode"]
    expected = {
        "mfcc": mfcc,
        "mfcc_delta": librosa.feature.delta(mfcc, width=width, order=1, mode=mode),
        "mfcc_delta2": librosa.feature.delta(mfcc, width=width, order=2, mode=mode),
    }
    for name, reference in expected.items():
        reference = np.concatenate([reference[0].T, reference[1].T])  # rows channel-major
        ours = columns[3600][name]
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max(), name


def test_deltas_of_a_file_shorter_than_their_width_are_nan(tmp_path):
    path = write_audio(tmp_path / "in" / "short.wav", chords(SR, 0.1)[:, None], SR)  # 5 frames
    out = tmp_path / "out"
    code, summary, err = run_json("extract", str(path), "-o", str(out), "-x", "mfcc", "--set", "mfcc.deltas=1")
    assert code == 0, err
    mfcc, delta = frames_of(out, "mfcc", "mfcc"), frames_of(out, "mfcc", "mfcc_delta")
    assert mfcc.shape[0] == 5 and np.isfinite(mfcc).all() and np.isnan(delta).all()


def test_delta_and_chroma_parameters_are_checked_before_anything_is_written(tmp_path):
    path = write_audio(tmp_path / "in" / "a.wav", chords(SR, 1.0)[:, None], SR)
    for bad in ("mfcc.deltas=3", "mfcc.delta_width=8", "mfcc.delta_width=1", "mfcc.delta_mode=wrap",
                "chroma.tuning=0.7", "chroma.norm=3", "chroma.n_chroma=0", "chroma.octwidth=0"):
        out = tmp_path / bad.replace("=", "_")
        code, _, err = run_json("extract", str(path), "-o", str(out), "-x", "mfcc,chroma", "--set", bad)
        assert code == 2, (bad, err)
        assert not out.exists() or not any(out.rglob("*.parquet"))


def test_torch_backend_writes_the_same_deltas(tmp_path):
    root = tmp_path / "in"
    for i in range(2):
        write_audio(root / f"{i}.wav", chords(SR, 2.0 + i, seed=i)[:, None], SR)
    tables = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        code, _, err = run_json(
            "extract", str(root), "-o", str(out), "-x", "mfcc", "--set", "mfcc.deltas=2", "--backend", backend,
            "--device", "cpu",
        )
        assert code == 0, err
        tables[backend] = ds.dataset(out / "mfcc").to_table().sort_by([("file_id", "ascending"), ("frame", "ascending")])
    for name in ("mfcc", "mfcc_delta", "mfcc_delta2"):
        a, b = (np.stack(tables[k][name].to_numpy(zero_copy_only=False)) for k in ("numpy", "torch"))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4 * np.abs(a).max(), name


# ---------------------------------------------------------------- summary

STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")


def numpy_functionals(values: np.ndarray) -> dict[str, np.ndarray]:
    """What the summary table must hold, computed with numpy from frame-table values."""
    if values.shape[0] == 0:
        return dict.fromkeys(STATS, np.full(values.shape[1:], np.nan))
    return {
        "mean": values.astype(np.float64).mean(axis=0),
        "std": values.astype(np.float64).std(axis=0),
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        **dict(zip(("p10", "p50", "p90"), np.percentile(values, [10, 50, 90], axis=0))),
    }


def programme_stereo(sr: int) -> np.ndarray:
    """Chords, 3 s of digital silence, chords; the right channel another chord sequence."""
    silence = np.zeros(int(sr * 3.0), dtype=np.float32)
    left = np.concatenate([chords(sr, 6.0), silence, chords(sr, 5.0, seed=1)])
    right = np.concatenate([chords(sr, 4.0, seed=3), silence, chords(sr, 7.0, seed=5)])
    return np.stack([left, 0.5 * right], axis=1)


def check_summary(out: Path, frame_columns: dict[str, list[str]], per_segment: bool) -> int:
    """Every summary value equals numpy's statistic of the frame tables (float32); returns the
    number of segment rows checked."""
    tables = {t: ds.dataset(out / t).to_table().to_pylist() for t in frame_columns}
    summary = ds.dataset(out / "summary").to_table().to_pylist()
    segments = ds.dataset(out / "segments").to_table().to_pylist() if per_segment else []
    checked = 0
    for file_id in {r["file_id"] for r in summary}:
        rows = [r for r in summary if r["file_id"] == file_id]
        for channel in {r["channel"] for r in rows}:
            mine = [r for r in rows if r["channel"] == channel]
            file_rows = [r for r in mine if r["segment_index"] is None]
            assert len(file_rows) == 1
            segment_rows = sorted((r for r in mine if r["segment_index"] is not None), key=lambda r: r["segment_index"])
            expected_segments = sorted(
                (s for s in segments if s["file_id"] == file_id and s["channel"] == channel), key=lambda s: s["start_s"]
            )
            # Per-segment rows cover exactly the segments table.
            assert [(r["start_s"], r["end_s"], r["label"]) for r in segment_rows] == [
                (s["start_s"], s["end_s"], s["label"]) for s in expected_segments
            ]
            assert [r["segment_index"] for r in segment_rows] == list(range(len(segment_rows)))
            for table, columns in frame_columns.items():
                frames = sorted(
                    (r for r in tables[table] if r["file_id"] == file_id and r["channel"] == channel),
                    key=lambda r: r["time_s"],
                )
                times = np.array([r["time_s"] for r in frames])
                for column in columns:
                    values = np.array([r[column] for r in frames], dtype=np.float32)
                    spans = [(file_rows[0], np.ones(times.size, dtype=bool))]
                    for i, r in enumerate(segment_rows):
                        last = i == len(segment_rows) - 1
                        inside = (times >= r["start_s"]) & ((times <= r["end_s"]) if last else (times < r["end_s"]))
                        spans.append((r, inside))
                    assert sum(inside.sum() for _, inside in spans[1:]) == (times.size if segment_rows else 0)
                    for row, inside in spans:
                        for stat, value in numpy_functionals(values[inside]).items():
                            got = np.asarray(row[f"{table}.{column}.{stat}"], dtype=np.float32)
                            want = np.asarray(value).astype(np.float32)
                            assert got.shape == want.shape
                            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * max(1.0, float(np.nanmax(np.abs(want), initial=0))))
                    checked += len(spans) - 1
    return checked


def test_summary_equals_numpy_statistics_per_file_and_per_segment(tmp_path):
    root = tmp_path / "in"
    write_audio(root / "programme.flac", programme_stereo(SR), SR)
    write_audio(root / "short.wav", chords(16000, 1.2, seed=7)[:, None], 16000)
    out = tmp_path / "out"
    code, summary, err = run_json(
        "extract", str(root), "-o", str(out), "-x", "mfcc,spectral,chroma,segments,summary",
        "--set", "mfcc.deltas=1", "--set", "audio.channels=each", "--set", "audio.block_seconds=2.5",
    )
    assert code == 0, err
    schema = ds.dataset(out / "summary").schema
    assert schema.field("mfcc.mfcc.mean").type.list_size == 20
    assert str(schema.field("spectral.centroid.p90").type) == "float"
    assert schema.field("chroma.chroma.std").type.list_size == 12
    frame_columns = {
        "mfcc": ["mfcc", "mfcc_delta"],
        "spectral": ["centroid", "bandwidth", "rolloff", "flatness", "zcr", "rms"],
        "chroma": ["chroma"],
    }
    segment_rows = check_summary(out, frame_columns, per_segment=True)
    assert segment_rows >= 3 * 9  # programme: music / silence / music on each channel, 9 columns
    # One row per file and channel, one per segment: nothing else.
    segments = ds.dataset(out / "segments").to_table().num_rows
    assert summary["tables"]["summary"] == 3 + segments


def test_summary_without_segments_and_on_the_torch_backend(tmp_path):
    root = tmp_path / "in"
    for i in range(2):
        write_audio(root / f"{i}.wav", chords(SR, 2.0 + i, seed=i)[:, None], SR)
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        code, summary, err = run_json(
            "extract", str(root), "-o", str(out), "-x", "logmel,spectral,summary", "--backend", backend, "--device", "cpu"
        )
        assert code == 0, err
        assert summary["tables"]["summary"] == 2
        rows = ds.dataset(out / "summary").to_table().to_pylist()
        assert all(r["segment_index"] is None and r["label"] is None for r in rows)
        check_summary(out, {"logmel": ["logmel"], "spectral": ["centroid", "rms"]}, per_segment=False)


def test_incremental_runs_redo_the_summary_with_the_tables_it_reads(tmp_path):
    root = tmp_path / "in"
    for i in range(2):
        write_audio(root / f"{i}.wav", chords(SR, 2.0, seed=i)[:, None], SR)
    out = tmp_path / "out"
    code, first, err = run_json("extract", str(root), "-o", str(out), "-x", "mfcc,summary")
    assert code == 0 and first["processed"] == 2, err
    code, again, err = run_json("extract", str(root), "-o", str(out), "-x", "mfcc,summary")
    assert code == 0 and again["processed"] == 0 and again["skipped"] == 2, err
    # A changed mfcc parameter changes the summary; the summary needs this run's mfcc rows.
    code, changed, err = run_json("extract", str(root), "-o", str(out), "-x", "mfcc,summary", "--set", "mfcc.n_mfcc=13")
    assert code == 0 and changed["processed"] == 2, err
    assert changed["tables"] == {"mfcc": 2 * 87, "summary": 2}
    assert ds.dataset(out / "summary").schema.field("mfcc.mfcc.mean").type.list_size == 13
    check_summary(out, {"mfcc": ["mfcc"]}, per_segment=False)


def test_a_file_too_short_for_a_frame_still_gets_its_summary_row(tmp_path):
    path = write_audio(tmp_path / "in" / "tiny.wav", chords(SR, 0.02)[:, None], SR)  # 441 samples
    out = tmp_path / "out"
    code, summary, err = run_json(
        "extract", str(path), "-o", str(out), "-x", "spectral,summary", "--set", "spectral.center=false"
    )
    assert code == 0, err
    assert summary["tables"].get("spectral", 0) == 0 and summary["tables"]["summary"] == 1
    row = ds.dataset(out / "summary").to_table().to_pylist()[0]
    assert row["channel"] == 0 and np.isnan(row["spectral.rms.mean"])


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)
def test_chroma_and_deltas_match_librosa_on_real_recordings(tmp_path):
    import librosa

    from scripts.check_parity import pick_files

    files = [p for p in pick_files(str(SHARED_DATA), 1) if librosa.get_duration(path=p) >= 1.0][:8]
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    out = tmp_path / "out"
    code, _, err = run_json("extract", "--files-from", str(listing), "-o", str(out), "-x", "mfcc,chroma", "--set", "mfcc.deltas=2")
    assert code == 0, err
    ids = {r["path"]: r["file_id"] for r in ds.dataset(out / "files").to_table().to_pylist()}
    tables = {t: ds.dataset(out / t).to_table() for t in ("mfcc", "chroma")}
    for path in files:
        y, _ = librosa.load(path, sr=SR)
        mfcc = librosa.feature.mfcc(y=y, sr=SR)
        chroma = librosa.feature.chroma_stft(y=y, sr=SR)
        power = (np.abs(librosa.stft(y)) ** 2).sum(axis=0)
        audible = power >= power.max() * 1e-12  # frames of numerical dust: see check_parity.py
        for table, column, reference in (
            ("mfcc", "mfcc_delta", librosa.feature.delta(mfcc)),
            ("mfcc", "mfcc_delta2", librosa.feature.delta(mfcc, order=2)),
            ("chroma", "chroma", chroma),
        ):
            rows = tables[table].filter(ds.field("file_id") == ids[path]).sort_by("frame")
            ours = np.stack(rows[column].to_numpy(zero_copy_only=False))
            assert ours.shape == reference.T.shape, (path, column)
            if column == "chroma":
                ours, reference = ours[audible], reference[:, audible]
            assert np.abs(ours - reference.T).max() <= 1e-4 * np.abs(reference).max(), (path, column)
