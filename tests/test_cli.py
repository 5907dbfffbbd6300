"""`audiokit extract/info/extractors` as a user runs them: real subprocesses, real files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, run_json, tone, write_audio

AUDIO = sorted(["a/tone.wav", "a/tone.flac", "b/tone.ogg", "b/tone.mp3"])


def table(out, name) -> pa.Table:
    return ds.dataset(str(out / name), format="parquet").to_table()


def files_by_relpath(out) -> dict[str, dict]:
    return {r["relpath"]: r for r in table(out, "files").to_pylist()}


def test_extract_directory_writes_the_contract_dataset(corpus, tmp_path):
    out = tmp_path / "out"
    code, summary, stderr = run_json("extract", str(corpus), "-o", str(out))
    assert code == 0, stderr
    assert summary["files_seen"] == 4 and summary["processed"] == 4 and summary["failed"] == 0
    assert summary["tables"]["mfcc"] > 0 and summary["tables"]["spectral"] == summary["tables"]["mfcc"]
    assert abs(summary["audio_s"] - (1.5 + 2.0 + 1.2 + 1.0)) < 0.1
    files = files_by_relpath(out)
    assert sorted(files) == AUDIO
    expected = {"a/tone.wav": (44100, 2, 1.5), "a/tone.flac": (16000, 1, 2.0), "b/tone.ogg": (22050, 1, 1.2), "b/tone.mp3": (48000, 2, 1.0)}
    for relpath, (sr, channels, seconds) in expected.items():
        row = files[relpath]
        assert (row["sample_rate"], row["channels"], row["status"]) == (sr, channels, "ok")
        assert abs(row["duration_s"] - seconds) / seconds < 0.02, relpath
        assert row["error"] is None and row["error_kind"] is None and row["config_hash"]
        assert row["path"] == str(corpus / relpath)

    mfcc = pq.read_table(next((out / "mfcc").glob("part-*.parquet")))
    assert mfcc.schema.field("mfcc").type == pa.list_(pa.float32(), 20)
    assert mfcc.schema.names[:4] == ["file_id", "channel", "frame", "time_s"]
    meta = mfcc.schema.metadata
    assert json.loads(meta[b"audiokit.config"])["chain"] == ["mfcc", "spectral"]
    assert meta[b"audiokit.version"] and meta[b"audiokit.config_hash"]
    spectral = table(out, "spectral")
    for column in ["centroid", "bandwidth", "rolloff", "flatness", "zcr", "rms"]:
        assert spectral.schema.field(column).type == pa.float32()
    manifest = json.loads((out / "_audiokit" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["config"]["mfcc"]["n_mfcc"] == 20
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["mfcc.sr=16000", "mfcc.n_mfcc=40", "mfcc.n_fft=512", "mfcc.hop_length=160", "mfcc.n_mels=64", "mfcc.fmin=20", "mfcc.fmax=7600"],
    ],
)
def test_mfcc_matches_librosa_load_and_mfcc(corpus, tmp_path, sets):
    librosa = pytest.importorskip("librosa")
    out = tmp_path / "out"
    args = [arg for s in sets for arg in ("--set", s)]
    code, _, stderr = run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc", *args)
    assert code == 0, stderr
    params = {s.split("=")[0].split(".")[1]: float(s.split("=")[1]) for s in sets}
    sr = int(params.pop("sr", 22050))
    kwargs = {k: (v if k in ("fmin", "fmax") else int(v)) for k, v in params.items()}
    mfcc = table(out, "mfcc")
    for relpath, row in files_by_relpath(out).items():
        y, _ = librosa.load(str(corpus / relpath), sr=sr, mono=True)
        ref = librosa.feature.mfcc(y=y, sr=sr, **kwargs).T
        mine = mfcc.filter(pa.compute.equal(mfcc["file_id"], row["file_id"])).sort_by("frame")
        ours = np.stack(mine["mfcc"].to_numpy(zero_copy_only=False))
        assert ours.shape == ref.shape, relpath
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), relpath


def test_bad_files_become_rows_and_the_run_goes_on(corpus, tmp_path):
    bad = corpus / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.mp3").write_text("this is not audio at all")
    good = write_audio(tmp_path / "src.flac", tone(16000, 2.0), 16000).read_bytes()
    (bad / "truncated.flac").write_bytes(good[: len(good) // 3])
    header = write_audio(tmp_path / "src.wav", tone(16000, 1.0), 16000).read_bytes()
    (bad / "header_only.wav").write_bytes(header[:44])
    garbage = bytearray(good)
    garbage[40:] = np.random.default_rng(0).integers(0, 256, len(garbage) - 40, dtype=np.uint8).tobytes()
    (bad / "corrupt.flac").write_bytes(bytes(garbage))
    out = tmp_path / "out"
    code, summary, stderr = run_json("extract", str(corpus), "-o", str(out))
    assert code == 1
    assert "Traceback" not in stderr
    files = files_by_relpath(out)
    # Four of the five bad files fail; the truncated FLAC's first frames decode, as with FFmpeg.
    assert len(files) == 9 and summary["failed"] == 4 and summary["processed"] == 9
    assert files["bad/corrupt.flac"]["status"] == "error"
    assert files["bad/truncated.flac"]["status"] == "ok" and 0 < files["bad/truncated.flac"]["duration_s"] < 2.0 / 3
    assert files["bad/empty.wav"]["error_kind"] == "empty"
    assert files["bad/text.mp3"]["error_kind"] == "unsupported"
    assert files["bad/header_only.wav"]["error_kind"] == "empty"
    for relpath, row in files.items():
        if row["status"] == "error":
            assert row["error"] and row["error_kind"], relpath
        else:
            assert row["duration_s"] > 0
    ok_ids = {r["file_id"] for r in files.values() if r["status"] == "ok"}
    assert set(table(out, "mfcc")["file_id"].unique().to_pylist()) == ok_ids
    assert all(files[r]["status"] == "ok" for r in AUDIO)


def test_fail_fast_stops_at_the_first_failure(corpus, tmp_path):
    (corpus / "zzz.wav").write_bytes(b"")
    code, summary, _ = run_json("extract", str(corpus), "-o", str(tmp_path / "out"), "--fail-fast", "--workers", "1")
    assert code == 1 and summary["stopped"] == "fail-fast" and summary["failed"] == 1


def test_a_missing_input_is_a_usage_error_and_writes_nothing(corpus, tmp_path):
    gone, out = tmp_path / "unmounted", tmp_path / "out"
    proc = run_cli("extract", str(corpus / "a"), str(gone), "-o", str(out), "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"audiokit: error: INPUT not found: {gone}\n"
    assert not out.exists()


def test_globs_matching_nothing_and_vanished_listed_files_are_warnings(corpus, tmp_path):
    # Not files, so no rows: a script reading the summary still has to see them.
    glob, gone = str(tmp_path / "nothing-*.wav"), tmp_path / "deleted.wav"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{gone}\n")
    out = str(tmp_path / "out")
    code, summary, stderr = run_json("extract", str(corpus / "a"), glob, "--files-from", str(listing), "-o", out, "-x", "mfcc")
    assert code == 0 and summary["processed"] == 2
    assert summary["warnings"] == [f"no file matches {glob!r}", f"cannot read {gone}: No such file or directory"]
    assert f"audiokit: warning: no file matches {glob!r}" in stderr
    code, summary, _ = run_json("extract", str(corpus / "a"), "-o", out, "-x", "mfcc")
    assert summary["warnings"] == [] and summary["skipped"] == 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-x", "mfcc,nope"], "unknown extractor 'nope'; choose from: beats, chroma, embeddings, logmel, loudness, loudness_frames, mfcc, segment_probs, segments, spectral, summary, tempo"),
        (["--set", "mfcc.n_mfc=13"], "unknown parameter mfcc.n_mfc"),
        (["--set", "mfcc.n_mfcc=lots"], "mfcc.n_mfcc must be an integer"),
        (["--set", "audio.channels=left"], "allowed: one of: mix, first, each"),
        (["-c", "/nonexistent.toml"], "config file not found"),
        (["--backend", "tensorflow"], "choose from: numpy, torch"),
    ],
)
def test_config_errors_exit_2_and_write_nothing(corpus, tmp_path, args, needle):
    out = tmp_path / "out"
    proc = run_cli("extract", str(corpus), "-o", str(out), *args)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_files_from_file_and_stdin(corpus, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two files\n{corpus / 'a/tone.wav'}\n\n{corpus / 'b/tone.ogg'}\n")
    code, summary, _ = run_json("extract", "--files-from", str(listing), "-o", str(tmp_path / "o1"))
    assert code == 0 and summary["processed"] == 2
    code, summary, _ = run_json(
        "extract", "--files-from", "-", "-o", str(tmp_path / "o2"), stdin=str(corpus / "a/tone.flac") + "\n"
    )
    assert code == 0 and summary["processed"] == 1


def test_include_exclude_and_globs(corpus, tmp_path):
    code, summary, _ = run_json("extract", str(corpus), "-o", str(tmp_path / "o1"), "--include", "a/*", "--exclude", "*.flac")
    assert code == 0 and summary["processed"] == 1
    assert list(files_by_relpath(tmp_path / "o1")) == ["a/tone.wav"]
    code, summary, _ = run_json("extract", str(corpus / "*" / "*.mp3"), "-o", str(tmp_path / "o2"))
    assert code == 0 and summary["processed"] == 1


def test_channel_policy_each(corpus, tmp_path):
    out = tmp_path / "out"
    code, _, _ = run_json("extract", str(corpus / "a" / "tone.wav"), "-o", str(out), "-x", "spectral", "--set", "audio.channels=each")
    assert code == 0
    spectral = table(out, "spectral")
    counts = {c: len(spectral.filter(pa.compute.equal(spectral["channel"], c))) for c in (0, 1)}
    assert counts[0] == counts[1] > 0
    left = spectral.filter(pa.compute.equal(spectral["channel"], 0))["rms"].to_numpy()
    right = spectral.filter(pa.compute.equal(spectral["channel"], 1))["rms"].to_numpy()
    assert np.median(right / left) == pytest.approx(0.7, rel=0.05)  # fixture: channel 1 is 0.7×


def test_info_and_extractors_commands(corpus, tmp_path):
    out = tmp_path / "out"
    assert run_json("extract", str(corpus), "-o", str(out))[0] == 0
    proc = run_cli("info", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["files"] == 4 and data["ok"] == 4 and data["tables"]["mfcc"]["rows"] > 0
    assert data["last_runs"][-1]["processed"] == 4
    proc = run_cli("info", str(out))
    assert proc.returncode == 0 and "mfcc" in proc.stdout and "4 ok" in proc.stdout
    proc = run_cli("extractors", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert {p["name"]: p["default"] for p in listing["mfcc"]["params"]}["n_mfcc"] == 20
    assert run_cli("info", str(tmp_path / "nothing")).returncode == 2


def test_readers_pandas_pyarrow_and_optional_engines(corpus, tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "out"
    assert run_json("extract", str(corpus), "-o", str(out))[0] == 0
    files = pd.read_parquet(out / "files")
    mfcc = pd.read_parquet(out / "mfcc")
    joined = mfcc.merge(files[["file_id", "relpath"]], on="file_id")
    assert len(joined) == len(mfcc) and len(mfcc.iloc[0]["mfcc"]) == 20
    import duckdb  # dev extra: not optional here
    import polars

    n = duckdb.sql(f"select count(*) from read_parquet('{out}/mfcc/*.parquet')").fetchall()[0][0]
    assert n == len(mfcc)
    assert polars.read_parquet(str(out / "mfcc" / "*.parquet")).height == len(mfcc)


def test_python_api_matches_the_cli(corpus, tmp_path):
    import audiokit

    summary = audiokit.extract([str(corpus)], str(tmp_path / "out"), extractors=["mfcc"], workers=1)
    assert summary.processed == 4 and summary.exit_status == 0
    assert audiokit.info(str(tmp_path / "out"))["ok"] == 4


def test_an_input_without_audio_is_a_warning_not_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    code, summary, stderr = run_json("extract", str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert code == 0 and summary["files_seen"] == 0
    assert summary["warnings"] == ["no audio files found in the INPUTs (in directories, audio is recognised by [input] extensions)"]
    assert "audiokit: warning: no audio files found" in stderr


def test_unwritable_output_exits_3(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory should be")
    proc = run_cli("extract", str(corpus), "-o", str(blocker / "out"))
    assert proc.returncode == 3 and "not writable" in proc.stderr


@pytest.mark.parametrize("command", [[], ["extract"], ["info"], ["extractors"], ["models"], ["models", "list"], ["models", "pull"]])
def test_every_command_has_help(command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and len(proc.stdout.strip().splitlines()) > 3


def test_a_run_never_imports_pandas(corpus, tmp_path):
    """pyarrow's conversion of Python objects imports pandas when it is installed (0.15 s in the
    writer and in every worker, 12 % of a run over half an hour of audio): the run avoids it."""
    pytest.importorskip("pandas")  # without pandas there is nothing to avoid
    import os
    import subprocess
    import sys

    from conftest import REPO

    code = f"""
import sys
import audiokit
from audiokit.config import load_config
from audiokit.discover import discover
from audiokit.pipeline import FileProcessor, Task
summary = audiokit.extract([{str(corpus)!r}], {str(tmp_path / "out")!r}, extractors=["mfcc", "logmel", "spectral", "segments", "segment_probs"], workers=1)
assert summary.processed == 4 and summary.failed == 0, summary
print("writer", "pandas" in sys.modules)
config = load_config(extractors=["mfcc", "logmel", "spectral", "segments", "segment_probs"])
processor = FileProcessor(config, staging_path=lambda file_id, table: {str(tmp_path)!r} + f"/{{file_id}}.{{table}}.arrow")
for f in discover([{str(corpus)!r}], extensions=["wav", "flac", "ogg", "mp3"]):
    assert processor.process(Task(f, config.chain)).row["status"] == "ok"
print("worker", "pandas" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["writer", "False", "worker", "False"]
    files = pq.read_table(str(tmp_path / "out" / "files"))
    assert files.schema.field("processed_at").type == pa.timestamp("ms", tz="UTC")
