"""Throughput (and peak worker memory) of the `embeddings` extractor per built-in model.

    python scripts/bench_embeddings.py [--model ge2e|cnn14|all] [--files 8] [--seconds 60]
                                       [--workers 2] [--device cpu] [--long-hours 0]
                                       [--backend numpy|torch]
                                       [--set embeddings.batch_size=64 ...]

Writes `--files` WAV files of `--seconds` each (44.1 kHz, tone + noise: the cost of these
models does not depend on the content) and runs `audiokit extract -x embeddings` on them as a
subprocess, with the model's default windows. `--long-hours H` adds one file of H hours (FLAC)
to show that memory stays bounded. cnn14 uses random weights of the official shape when its
checkpoint has not been pulled (same cost). Prints one line per model.

`--backend numpy` embeds each file in its worker; `--backend torch` has the workers cut windows
and one process run the model on windows packed across files (many short files: e.g.
`--files 400 --seconds 2`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent


def write_corpus(root: Path, files: int, seconds: float, long_hours: float) -> float:
    rng = np.random.default_rng(0)
    sr = 44100
    total = 0.0
    for i in range(files):
        t = np.arange(int(sr * seconds)) / sr
        y = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / f"f{i:03d}.wav", y.astype(np.float32), sr, subtype="PCM_16")
        total += seconds
    if long_hours > 0:
        with sf.SoundFile(root / "long.flac", "w", 16000, 1, subtype="PCM_16") as f:
            for _ in range(int(long_hours * 360)):  # 10 s blocks
                f.write((0.05 * rng.standard_normal(160000)).astype(np.float32))
        total += long_hours * 3600
    return total


def random_cnn14(path: Path) -> Path:
    import torch

    sys.path.insert(0, str(REPO))
    from audiokit.models.networks import Cnn14

    torch.manual_seed(0)
    torch.save({"model": Cnn14().state_dict()}, path)
    return path


def run(model: str, corpus: Path, out: Path, workers: int, device: str, backend: str, extra: list[str]) -> dict:
    args = [sys.executable, "-m", "audiokit", "extract", str(corpus), "-o", str(out), "-x", "embeddings",
            "--workers", str(workers), "--json", "--set", f"embeddings.model={model}",
            "--set", f"embeddings.device={device}", "--backend", backend, "--device", device]
    for setting in extra:
        args += ["--set", setting]
    started = time.monotonic()
    proc = subprocess.run(args, check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{model}: exit {proc.returncode}: {proc.stderr.strip()}")
    summary = json.loads(proc.stdout)
    return {"wall_s": wall, "rows": summary["tables"].get("embeddings", 0), "audio_s": summary["audio_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("ge2e", "cnn14", "all"), default="all")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    parser.add_argument("--long-hours", type=float, default=0.0)
    parser.add_argument("--set", dest="settings", action="append", default=[], help="extra embeddings.X=Y")
    args = parser.parse_args()
    models = ["ge2e", "cnn14"] if args.model == "all" else [args.model]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        corpus.mkdir()
        audio_s = write_corpus(corpus, args.files, args.seconds, args.long_hours)
        for model in models:
            extra = list(args.settings)
            if model == "cnn14":
                sys.path.insert(0, str(REPO))
                from audiokit.models.registry import PannsCnn14

                if PannsCnn14().default_weights() is None:
                    extra.append(f"embeddings.weights={random_cnn14(tmp / 'cnn14-random.pth')}")
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            result = run(model, corpus, tmp / f"out-{model}", args.workers, args.device, args.backend, extra)
            peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
            print(
                f"{model}: {audio_s / 3600:.2f} h of audio ({args.files} files) in {result['wall_s']:.1f} s with "
                f"{args.workers} workers, --backend {args.backend} on {args.device} = {audio_s / result['wall_s']:.0f}x real time, "
                f"{result['rows'] / result['wall_s']:.1f} windows/s ({result['rows']} windows), "
                f"peak process RSS {peak_mb:.0f} MB (cores: {os.cpu_count()})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
