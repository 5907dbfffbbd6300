"""`--engine ray` against a real Ray cluster of two nodes on this machine (started once for the
session with `ray start`, on loopback): the same dataset as the local engine, faults isolated
per file, a killed driver resumed without loss or duplicates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from conftest import REPO, STAGE_ON_DISK, run_cli, run_json, tone, write_audio
from plugins.faulty import MARK

RAY_ENV = {
    "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
    "AUDIOKIT_PLUGINS": "plugins.faulty",  # every node must have the plugins a chain uses
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A head node and a worker node (one CPU each) on loopback, with Ray's token
    authentication, as a real cluster would have it. Yields the environment a driver needs
    (the token) and the head's address in `RAY_ADDRESS_FOR_TESTS`."""
    import secrets

    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, **RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--object-store-memory=150000000", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                   check=True, capture_output=True, env=env, timeout=180)
    subprocess.run([ray, "start", f"--address={address}", *common], check=True, capture_output=True, env=env, timeout=180)
    try:
        yield {**RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_ADDRESS_FOR_TESTS": address}
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)


def corpus_with_damage(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(3)
    for i in range(n):
        sr = [8000, 16000, 22050, 44100][i % 4]
        ext = ["wav", "flac", "ogg", "mp3"][i % 4]
        write_audio(root / f"d{i % 2}" / f"f{i:02d}.{ext}", tone(sr, float(rng.uniform(0.5, 2.5)), channels=1 + i % 2, seed=i), sr)
    good = (root / "d0" / "f00.wav").read_bytes()
    (root / "bad" / "truncated.wav").parent.mkdir(parents=True)
    (root / "bad" / "truncated.wav").write_bytes(good[: len(good) // 3])
    (root / "bad" / "empty.flac").write_bytes(b"")
    (root / "bad" / "text.mp3").write_text("not audio")
    return root


def rows(out: Path, table: str, drop=("processed_at",)) -> list[tuple]:
    data = ds.dataset(str(out / table), format="parquet").to_table()
    data = data.drop_columns([c for c in drop if c in data.column_names])
    keyed = [tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(r.items())) for r in data.to_pylist()]
    return sorted(keyed, key=repr)


def test_ray_and_local_engines_write_the_same_dataset(tmp_path, ray_cluster):
    corpus = corpus_with_damage(tmp_path / "in")
    args = ["extract", str(corpus), "-x", "mfcc,spectral", "--workers", "2"]
    code_local, local, _ = run_json(*args, "-o", str(tmp_path / "local"))
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster["RAY_ADDRESS_FOR_TESTS"]]
    code_ray, remote, stderr = run_json(*args, "-o", str(tmp_path / "ray"), *ray_args, env=ray_cluster)
    assert code_local == code_ray == 1, stderr
    # The truncated WAV decodes (what is left of it); the empty and the text file fail.
    assert remote["processed"] == local["processed"] == 11 and remote["failed"] == local["failed"] == 2
    assert remote["tables"] == local["tables"]
    for table in ("files", "mfcc", "spectral"):
        assert rows(tmp_path / "ray", table) == rows(tmp_path / "local", table), table
    # Incremental on the Ray engine as well: nothing changed, nothing redone.
    code, again, _ = run_json(*args, "-o", str(tmp_path / "ray"), *ray_args, "--no-retry-failed", env=ray_cluster)
    assert code == 0 and again["processed"] == 0 and again["skipped"] == 11


def test_the_torch_backend_on_ray_finishes_device_batches_in_its_own_actor(tmp_path, ray_cluster):
    corpus = corpus_with_damage(tmp_path / "in", n=6)
    args = ["extract", str(corpus), "-x", "mfcc,spectral", "--backend", "torch", "--device", "cpu"]
    code_local, local, _ = run_json(*args, "-o", str(tmp_path / "local"))
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster["RAY_ADDRESS_FOR_TESTS"]]
    code_ray, remote, stderr = run_json(*args, "-o", str(tmp_path / "ray"), *ray_args, env=ray_cluster)
    assert code_local == code_ray == 1 and remote["tables"] == local["tables"], stderr
    assert rows(tmp_path / "ray", "files") == rows(tmp_path / "local", "files")
    for table in ("mfcc", "spectral"):
        # Device batches hold other files on Ray than locally: equal within float32 rounding.
        a = ds.dataset(str(tmp_path / "ray" / table)).to_table().sort_by([("file_id", "ascending"), ("frame", "ascending")])
        b = ds.dataset(str(tmp_path / "local" / table)).to_table().sort_by([("file_id", "ascending"), ("frame", "ascending")])
        assert a.column("frame").equals(b.column("frame"))
        for column in a.column_names[4:]:
            x, y = values(a, column), values(b, column)
            assert np.allclose(x, y, rtol=0, atol=1e-4 * max(1.0, float(np.abs(y).max()))), (table, column)


def values(table, column: str) -> np.ndarray:
    data = table.column(column).combine_chunks()
    if pa.types.is_fixed_size_list(data.type):
        data = data.flatten()
    return data.to_numpy(zero_copy_only=False).astype(np.float64)


def test_a_crash_a_hang_and_an_exception_cost_only_their_files(tmp_path, ray_cluster):
    corpus = tmp_path / "in"
    for i in range(3):
        write_audio(corpus / f"ok{i}.wav", tone(16000, 1.0, seed=i), 16000)
    write_audio(corpus / "marked.wav", np.full((16000, 1), MARK, dtype=np.float32), 16000)
    kinds = {}
    for mode in ("abort", "hang", "raise"):
        out = tmp_path / f"out-{mode}"
        code, summary, stderr = run_json(
            "extract", str(corpus), "-o", str(out), "-x", "faulty", "--set", f"faulty.mode={mode}",
            "--set", "run.min_file_timeout=3", "--set", "run.file_timeout=3",
            "--engine", "ray", "--ray-address", ray_cluster["RAY_ADDRESS_FOR_TESTS"], env=ray_cluster,
        )
        assert code == 1 and summary["processed"] == 4 and summary["failed"] == 1, stderr
        files = {r["relpath"]: r for r in ds.dataset(str(out / "files")).to_table().to_pylist()}
        assert all(files[f"ok{i}.wav"]["status"] == "ok" for i in range(3))
        kinds[mode] = files["marked.wav"]["error_kind"]
    assert kinds == {"abort": "crash", "hang": "timeout", "raise": "extract"}


def _finished_files(out: Path) -> int:
    """Files whose rows are staged or committed: what the run has done so far."""
    staged = {p.name.split(".")[0] for p in (out / "_audiokit" / "staging").glob("*.arrow")} if out.exists() else set()
    committed = set()
    if (out / "files").is_dir():
        committed = set(ds.dataset(str(out / "files")).to_table(columns=["file_id"]).column(0).to_pylist())
    return len(staged | committed)


@pytest.mark.parametrize("share", [0.15, 0.45, 0.8])
def test_a_driver_killed_mid_run_resumes_to_the_exact_rows(tmp_path, ray_cluster, share):
    corpus = tmp_path / "in"
    for i in range(20):
        write_audio(corpus / f"f{i:02d}.flac", tone(22050, 3.0, seed=i, freq=200.0 + 20 * i), 22050)
    clean = tmp_path / "clean"
    assert run_cli("extract", str(corpus), "-o", str(clean), "-x", "mfcc").returncode == 0
    out = tmp_path / "out"
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster["RAY_ADDRESS_FOR_TESTS"]]
    cmd = [sys.executable, "-m", "audiokit", "extract", str(corpus), "-o", str(out), "-x", "mfcc", "--quiet", *ray_args]
    # Files staged on disk show how far the run has come (in memory they would not).
    proc = subprocess.Popen(cmd, env={**os.environ, **ray_cluster, **STAGE_ON_DISK}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _finished_files(out) < share * 20:
        time.sleep(0.05)
    done_at_kill = _finished_files(out)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kill landed mid-run: the run had not ended (it logs itself last).
    assert done_at_kill >= share * 20 and not (out / "_audiokit" / "runs.jsonl").exists()
    code, summary, stderr = run_json(*cmd[3:], env=ray_cluster)
    assert code == 0, stderr
    assert summary["processed"] + summary["skipped"] == 20
    for table in ("mfcc",):
        assert rows(out, table) == rows(clean, table)
    files = ds.dataset(str(out / "files")).to_table().column("file_id").to_pylist()
    assert len(files) == len(set(files)) == 20


def test_without_an_address_a_local_ray_instance_is_started(tmp_path):
    corpus = tmp_path / "in"
    write_audio(corpus / "a.wav", tone(16000, 1.0), 16000)
    env = {k: v for k, v in RAY_ENV.items() if k != "AUDIOKIT_PLUGINS"}
    code, summary, stderr = run_json("extract", str(corpus), "-o", str(tmp_path / "out"), "-x", "mfcc",
                                     "--engine", "ray", "--workers", "1", env={**env, "RAY_ADDRESS": ""})
    assert code == 0 and summary["processed"] == 1, stderr
    assert stderr == ""  # Ray's own reports stay out of a cron job's mail


def test_runs_in_one_python_process_reuse_the_ray_instance_they_started(tmp_path):
    """The library leaves the instance a run started up for later runs of the process (Ray shuts
    it down at exit); a run that asks for another one gets it; a run in a thread cleans up."""
    corpus = tmp_path / "in"
    write_audio(corpus / "a.wav", tone(16000, 1.0), 16000)
    script = f"""
import json, ray, audiokit
first = audiokit.extract({str(corpus)!r}, {str(tmp_path / "one")!r}, extractors=["mfcc"], engine="ray", workers=1)
node = ray.get_runtime_context().get_node_id()
second = audiokit.extract({str(corpus)!r}, {str(tmp_path / "two")!r}, extractors=["mfcc"], engine="ray", workers=1)
same = ray.get_runtime_context().get_node_id() == node
third = audiokit.extract({str(corpus)!r}, {str(tmp_path / "three")!r}, extractors=["mfcc"], engine="ray", workers=2)
cpus = ray.cluster_resources()["CPU"]
# From threads: an instance a thread starts dies with that thread, so those runs shut it down.
import threading
threaded = []
for name in ("four", "five"):
    thread = threading.Thread(target=lambda name=name: threaded.append(audiokit.extract(
        {str(corpus)!r}, {str(tmp_path)!r} + "/" + name, extractors=["mfcc"], engine="ray", workers=1).processed))
    thread.start()
    thread.join()
print(json.dumps([first.processed, second.processed, third.processed, same, cpus, threaded, ray.is_initialized()]))
"""
    env = {**os.environ, **{k: v for k, v in RAY_ENV.items() if k != "AUDIOKIT_PLUGINS"}, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [1, 1, 1, True, 2.0, [1, 1], False]
    for name in ("two", "three", "four", "five"):
        assert rows(tmp_path / name, "mfcc") == rows(tmp_path / "one", "mfcc"), name


def test_without_ray_installed_the_engine_is_a_usage_error(tmp_path):
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\", name='ray')\n")
    corpus = tmp_path / "in"
    write_audio(corpus / "a.wav", tone(16000, 0.5), 16000)
    proc = run_cli("extract", str(corpus), "-o", str(tmp_path / "out"), "--engine", "ray",
                   env={"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{REPO}"})
    assert proc.returncode == 2
    assert proc.stderr == "audiokit: error: --engine ray needs ray, which is not installed: pip install 'audiokit[ray]'\n"
    assert not (tmp_path / "out").exists()
