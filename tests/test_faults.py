"""Crash safety and isolation, with real subprocesses: SIGKILL at chosen moments, workers that
abort or hang, SIGTERM/SIGINT, and thousands of mutated files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.dataset as ds
import pytest
from conftest import (
    REPO,
    STAGE_ON_DISK,
    committed_parts,
    kill_on,
    parts,
    peak_tree_rss,
    run_json,
    runs_logged,
    staged_files,
    tone,
    write_audio,
)
from plugins.faulty import MARK

PLUGIN_ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "AUDIOKIT_PLUGINS": "plugins.faulty"}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "audiokit", *args]


def start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)


def marked(path, sr=16000, seconds=1.0):
    data = np.full((int(sr * seconds), 1), MARK, dtype=np.float32)
    return write_audio(path, data, sr)


def table_rows(out, name, drop=("processed_at",)) -> set:
    table = ds.dataset(str(out / name), format="parquet").to_table()
    table = table.drop_columns([c for c in drop if c in table.column_names])
    rows = table.to_pylist()
    return {tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in r.items())) for r in rows}


def make_corpus(root, n=14):
    rng = random.Random(7)
    for i in range(n):
        sr = rng.choice([8000, 16000, 22050, 44100])
        ext = rng.choice(["wav", "flac", "ogg"])
        write_audio(root / f"d{i % 3}" / f"f{i:02d}.{ext}", tone(sr, rng.uniform(0.5, 4.0), channels=rng.choice([1, 2]), seed=i), sr)
    return root


def test_sigkill_at_chosen_moments_then_resume_equals_a_clean_run(tmp_path):
    """SIGKILL while files are being worked on (some staged, none of them committed), in the
    middle of a commit (a feature part renamed, the `files` part not yet) and right after the
    commit point; each kill is checked to have landed there, before the run ended."""
    corpus = make_corpus(tmp_path / "corpus")
    clean = tmp_path / "clean"
    code, summary, _ = run_json("extract", str(corpus), "-o", str(clean), "-x", "mfcc,spectral", "--workers", "2")
    assert code == 0
    expected = {name: table_rows(clean, name) for name in ("mfcc", "spectral")}
    expected_files = table_rows(clean, "files", drop=("processed_at", "path"))

    def files_staged(k):
        return lambda out: staged_files(out) >= k

    def mid_commit(out):  # feature parts are renamed first, the files part is the commit point
        return parts(out, "spectral") > parts(out, "files")

    def committed(out):
        return parts(out, "files") > 0

    # Kills while files are staged need them staged on disk (small files' rows otherwise travel
    # in memory, where a kill simply loses them); the last plan stages as runs do by default.
    plans = [
        (STAGE_ON_DISK, [files_staged(2), files_staged(6), mid_commit]),
        (STAGE_ON_DISK, [files_staged(1), mid_commit, committed]),
        (STAGE_ON_DISK, [files_staged(10), files_staged(3), files_staged(12)]),
        (None, [mid_commit, committed]),
    ]
    commit_kills_missed = 0
    for attempt, (env, plan) in enumerate(plans):
        out = tmp_path / f"out{attempt}"
        for event in plan:
            runs_before = runs_logged(out)
            proc = start_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", "--workers", "2", "--quiet", env=env)
            landed = kill_on(proc, lambda out=out, event=event: event(out))
            in_time = landed and runs_logged(out) == runs_before  # killed before the run's end
            if event in (mid_commit, committed) and not in_time:
                # A commit is the last few milliseconds of this run: a poll (or the kill, on a
                # loaded machine) can come after the run's end. Counted below: most must land.
                commit_kills_missed += 1
                continue
            assert landed, (attempt, "the run ended before the event it was to be killed on")
            assert in_time, (attempt, "killed after the run had ended")
            if committed_parts(out, "files"):
                # What is there after a kill is a readable dataset with whole files only (read
                # as a `*.parquet` glob reads it; see test_a_directory_reader_after_a_kill…).
                files = ds.dataset(committed_parts(out, "files"), format="parquet").to_table()
                assert len(files["file_id"].unique()) == len(files)
                for name in ("mfcc", "spectral"):
                    if committed_parts(out, name):
                        ds.dataset(committed_parts(out, name), format="parquet").to_table()
        committed = committed_parts(out, "files")
        committed_before = ds.dataset(committed).count_rows() if committed else 0
        code, summary, stderr = run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", "--workers", "2")
        assert code == 0, stderr
        assert summary["skipped"] == committed_before  # nothing committed is recomputed
        assert summary["processed"] + summary["skipped"] == 14
        for name in ("mfcc", "spectral"):
            assert table_rows(out, name) == expected[name], (attempt, name)
        assert table_rows(out, "files", drop=("processed_at", "path")) == expected_files
        assert not list(out.rglob("*.tmp"))
    assert commit_kills_missed <= 2, f"{commit_kills_missed} of 6 kills at a commit came too late"


def test_a_directory_reader_after_a_kill_mid_commit_reads_whole_files(tmp_path):
    # A part being written is a hidden file until its rename: readers of the directory skip it.
    corpus = make_corpus(tmp_path / "corpus")
    for attempt in range(5):
        out = tmp_path / f"out{attempt}"
        proc = start_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", "--workers", "2", "--quiet")
        if kill_on(proc, lambda out=out: (out / "files").is_dir() and any(
            name.endswith(".tmp") for name in os.listdir(out / "files")
        )):
            break
    else:
        raise AssertionError("no kill landed while the files part was being written")
    files = ds.dataset(str(out / "files"), format="parquet").to_table()  # what pandas reads
    # Whole committed parts only: none yet (the first part was being written), or unique rows.
    assert files.num_rows == 0 or len(files["file_id"].unique()) == files.num_rows


def test_a_crashing_worker_costs_only_its_file(corpus, tmp_path):
    marked(corpus / "poison.wav")
    marked(corpus / "poison2.flac")
    out = tmp_path / "out"
    code, summary, stderr = run_json(
        "extract", str(corpus), "-o", str(out), "-x", "faulty,mfcc", "--set", "faulty.mode=abort", "--workers", "2", env=PLUGIN_ENV
    )
    assert code == 1 and "Traceback" not in stderr
    files = {r["relpath"]: r for r in ds.dataset(str(out / "files")).to_table().to_pylist()}
    assert files["poison.wav"]["error_kind"] == "crash" and "SIGABRT" in files["poison.wav"]["error"]
    assert files["poison2.flac"]["error_kind"] == "crash"
    ok = [r for r in files.values() if r["status"] == "ok"]
    assert len(ok) == 4 and summary["failed"] == 2
    assert set(ds.dataset(str(out / "mfcc")).to_table()["file_id"].unique().to_pylist()) == {r["file_id"] for r in ok}


def test_a_hanging_file_times_out_and_the_run_goes_on(corpus, tmp_path):
    marked(corpus / "stuck.wav")
    out = tmp_path / "out"
    started = time.monotonic()
    code, summary, _ = run_json(
        "extract", str(corpus), "-o", str(out), "-x", "faulty", "--set", "faulty.mode=hang",
        "--set", "run.min_file_timeout=3", "--set", "run.file_timeout=1", "--workers", "2", env=PLUGIN_ENV,
    )
    # Not a speed check: without the timeout the run would never end. It needs the 3 s timeout
    # plus seconds of work; 120 s leaves room for a slow or loaded machine.
    assert code == 1 and time.monotonic() - started < 120
    files = {r["relpath"]: r for r in ds.dataset(str(out / "files")).to_table().to_pylist()}
    assert files["stuck.wav"]["error_kind"] == "timeout"
    assert sum(r["status"] == "ok" for r in files.values()) == 4


def test_preloaded_modules_are_imported_once_before_the_workers_fork(corpus, tmp_path):
    # `faulty` imports plugins.imported_once on its first block and names it in `preload`.
    log = tmp_path / "imports.log"
    code, summary, _ = run_json(
        "extract", str(corpus), "-o", str(tmp_path / "out"), "-x", "faulty", "--set", "faulty.mode=none",
        "--workers", "2", env={**PLUGIN_ENV, "AUDIOKIT_TEST_IMPORT_LOG": str(log)},
    )
    assert code == 0 and summary["processed"] == 4
    assert len(log.read_text().split()) == 1  # by the parent; each worker would import it too


def test_an_extractor_exception_is_a_row(corpus, tmp_path):
    marked(corpus / "odd.wav")
    code, summary, _ = run_json(
        "extract", str(corpus), "-o", str(tmp_path / "out"), "-x", "faulty", "--set", "faulty.mode=raise", env=PLUGIN_ENV
    )
    assert code == 1 and summary["failed"] == 1
    assert summary["errors"][0]["error_kind"] == "extract" and "marked file" in summary["errors"][0]["error"]


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_after_committing(corpus, tmp_path, sig, status):
    marked(corpus / "stuck.wav")
    out = tmp_path / "out"
    proc = start_cli("extract", str(corpus), "-o", str(out), "-x", "faulty", "--set", "faulty.mode=hang", "--workers", "1", env=PLUGIN_ENV)
    # Files go longest first, so the 4 tones (all longer than 1 s) finish before the stuck one,
    # and they are committed within seconds although the stuck file holds the only worker.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "files").exists():
        time.sleep(0.3)
    assert (out / "files").exists(), "finished files were not committed while a file hung"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "stopped by" in stderr and "Traceback" not in stderr
    files = ds.dataset(str(out / "files")).to_table().to_pylist()
    assert {r["relpath"] for r in files} >= {"a/tone.wav", "a/tone.flac"}
    assert all(r["status"] == "ok" for r in files)
    # The next run with the same config (the stuck file gone) does only what was left.
    (corpus / "stuck.wav").unlink()
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "-x", "faulty", "--set", "faulty.mode=hang", env=PLUGIN_ENV)
    assert code == 0 and summary["processed"] == 4 - len(files) and summary["skipped"] == len(files)


def mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 40)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        data = data[: rng.randrange(len(data))]
    elif kind == 2:  # absurd header sizes
        for pos in range(4, min(len(data) - 4, 80), 4):
            if rng.random() < 0.3:
                data[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00"])
    elif kind == 3:  # random bytes in the middle
        start = rng.randrange(len(data))
        data[start : start + 256] = os.urandom(min(256, len(data) - start))
    elif kind == 4:  # garbage appended
        data += os.urandom(rng.randint(1, 2048))
    else:  # zeroed header
        data[:64] = bytes(min(64, len(data)))
    return bytes(data)


def test_fuzzed_files_always_finish_with_a_row_each(tmp_path):
    rng = random.Random(3)
    seeds = []
    for ext, sr, ch in [("wav", 8000, 1), ("wav", 44100, 2), ("flac", 16000, 1), ("ogg", 22050, 2), ("mp3", 16000, 1)]:
        seeds.append((ext, write_audio(tmp_path / f"seed.{ext}", tone(sr, 0.4, channels=ch), sr).read_bytes()))
    fuzz = tmp_path / "fuzz"
    fuzz.mkdir()
    n = 1200
    for i in range(n):
        ext, data = rng.choice(seeds)
        (fuzz / f"m{i:04d}.{ext}").write_bytes(mutate(data, rng))
    out = tmp_path / "out"
    proc = start_cli("extract", str(fuzz), "-o", str(out), "-x", "mfcc", "--workers", "2", "--quiet", "--json")
    peak = peak_tree_rss(proc)
    stdout, stderr = proc.communicate(timeout=1200)
    summary = json.loads(stdout)
    assert proc.returncode in (0, 1) and "Traceback" not in stderr
    assert summary["processed"] == n
    files = ds.dataset(str(out / "files")).to_table().to_pylist()
    assert len(files) == n
    for row in files:
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            assert row["error_kind"] and row["error"]
    # Not a memory benchmark (that is `scripts/bench.py --memory`): a bound that only a leak per
    # file breaks (1200 files; three processes of ~100 MB each), with 2x room for allocators.
    assert peak < 600e6, f"peak RSS of the run's process tree {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("staging", ["on_disk", "in_memory"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_disk_full_exits_3_and_leaves_a_valid_dataset(tmp_path, backend, staging):
    """Rows that cannot be staged (on disk) or committed (rows staged in memory) stop the run
    (exit 3): no file gets an error row for the disk's fault and the dataset stays valid, with
    either backend."""
    if backend == "torch":
        pytest.importorskip("torch")
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        corpus = tmp_path / "corpus"
        for i in range(8):  # 0.9 MB of logmel rows each
            write_audio(corpus / f"f{i}.flac", tone(22050, 40.0, seed=i), 22050)
        out = mount / "out"
        in_memory = {"AUDIOKIT_STAGE_INLINE_BYTES": str(4 << 20)}
        env = {**os.environ, "PYTHONPATH": str(REPO), **(STAGE_ON_DISK if staging == "on_disk" else in_memory)}
        proc = subprocess.run(
            cli_command("extract", str(corpus), "-o", str(out), "-x", "logmel", "--workers", "2",
                        "--backend", backend, "--device", "cpu"),
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert proc.returncode == 3, proc.stderr
        assert "No space left" in proc.stderr and "Traceback" not in proc.stderr
        if (out / "files").exists():
            files = ds.dataset(str(out / "files")).to_table().to_pylist()
            assert all(r["status"] == "ok" for r in files)  # the disk's fault is no file's row
            if (out / "logmel").exists():
                logmel = ds.dataset(str(out / "logmel")).to_table(columns=["file_id"])
                assert set(logmel["file_id"].unique().to_pylist()) <= {r["file_id"] for r in files}
    finally:
        subprocess.run(["umount", str(mount)])
