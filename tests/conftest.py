"""Shared fixtures: audio generated in code, real encoders, the CLI as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from skip_guard import (  # noqa: F401 (the allowed skip reasons, and the guard's hooks)
    NO_CHROMIUM,
    NO_CUDA,
    NO_SHARED_DATA,
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# soundfile (format, subtype) per extension; mp3/ogg go through libsndfile's own encoders.
ENCODINGS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def tone(sr: int, seconds: float, *, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise, `(n, channels)` float32, the second channel quieter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    y = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    out = np.stack([y * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def write_audio(path: Path, data: np.ndarray, sr: int) -> Path:
    ext = path.suffix.lstrip(".").lower()
    fmt, subtype = ENCODINGS[ext]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def run_cli(*args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run `python -m audiokit ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "audiokit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=full_env,
    )


def run_json(*args: str, **kwargs) -> tuple[int, dict, str]:
    proc = run_cli(*args, "--json", **kwargs)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, summary, proc.stderr


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small directory of real encoded files: formats, rates, mono and stereo."""
    root = tmp_path / "corpus"
    write_audio(root / "a" / "tone.wav", tone(44100, 1.5, channels=2), 44100)
    write_audio(root / "a" / "tone.flac", tone(16000, 2.0, freq=300.0), 16000)
    write_audio(root / "b" / "tone.ogg", tone(22050, 1.2, freq=660.0, seed=1), 22050)
    write_audio(root / "b" / "tone.mp3", tone(48000, 1.0, channels=2, freq=880.0, seed=2), 48000)
    (root / "notes.txt").write_text("not audio, ignored by extension")
    return root


def write_av(path: Path, data: np.ndarray, sr: int, codec: str, container: str | None = None) -> Path:
    """Encode `(n, channels)` float32 with FFmpeg through PyAV (AAC/M4A, Opus in WebM, …)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "mono" if data.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        for start in range(0, len(data), 1024):
            chunk = np.ascontiguousarray(data[start : start + 1024].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def peak_tree_rss(proc) -> int:
    """Run until `proc` (a Popen) exits, sampling the summed RSS of it and its descendants."""
    from scripts.bench import TreeRSS  # the benchmark's sampler: one definition of "peak RSS"

    sampler = TreeRSS(proc.pid)
    proc.wait()
    return sampler.stop()


# --- killing a run at an observable moment -----------------------------------------------


# Runs whose kill points are staged files: every file's rows staged on disk, none in memory.
STAGE_ON_DISK = {"AUDIOKIT_STAGE_INLINE_BYTES": "0"}


def staged_files(out: Path) -> int:
    """Files whose rows a worker has staged on disk (written, not yet committed): with
    `STAGE_ON_DISK`, every file a worker has finished."""
    try:
        return len({name.split(".")[0] for name in os.listdir(out / "_audiokit" / "staging")})
    except FileNotFoundError:
        return 0


def parts(out: Path, table: str) -> int:
    try:
        return sum(name.startswith("part-") and name.endswith(".parquet") for name in os.listdir(out / table))
    except FileNotFoundError:
        return 0


def committed_parts(out: Path, table: str) -> list[str]:
    """The table's committed parts (`part-*.parquet`), as a `*.parquet` glob finds them: a part
    being written when a run dies is `part-*.parquet.<id>.tmp` until the next run deletes it."""
    return sorted(str(p) for p in (out / table).glob("part-*.parquet"))


def runs_logged(out: Path) -> int:
    try:
        return len((out / "_audiokit" / "runs.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def kill_on(proc: subprocess.Popen, event, timeout: float = 120) -> bool:
    """SIGKILL `proc` the moment `event()` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if event():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait(timeout=timeout)
    return False
