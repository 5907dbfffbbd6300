"""Dev evaluation of the `segments` extractor: accuracy, speech/music F1 and speed.

Builds the dev mixes (`../shared/eval/make_dev_mixes.py --split dev`: sources never used for
training), runs `audiokit extract MIXES -x segments` in a subprocess on one worker, scores the
output with `../shared/eval/seg_score.py` and prints the figures plus the speed: audio seconds
per wall second of the whole run (decode included), per CPU second of the run's processes, and
per CPU second of the extractor alone (features, classifier, smoothing on the decoded 16 kHz
samples, in this process). The mixes are cached per (`--n`, `--seed`, the mix script's bytes).

usage: python scripts/eval_segments.py [--work /tmp/segments-eval] [--set segments.x=y ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = next(
    (p / "shared" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "eval").is_dir()),
    REPO.parent / "shared",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/segments-eval"))
    ap.add_argument(
        "--shared", type=Path, default=SHARED, help="the ../shared folder (eval/ and data/)"
    )
    ap.add_argument("--n", type=int, default=12, help="number of dev mixes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="extra --set for the run"
    )
    ap.add_argument("--rebuild", action="store_true", help="rebuild the mixes even if present")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    mix_script = args.shared / "eval" / "make_dev_mixes.py"
    script_hash = hashlib.sha256(mix_script.read_bytes()).hexdigest()[:12]
    mixes = args.work / f"mixes-dev-n{args.n}-seed{args.seed}-{script_hash}"
    out = args.work / "out"
    if args.rebuild or not (mixes / "index.json").exists():
        subprocess.run(
            [
                sys.executable,
                str(mix_script),
                str(mixes),
                "--split",
                "dev",
                "--n",
                str(args.n),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "audiokit",
        "extract",
        str(mixes),
        "-o",
        str(out),
        "-x",
        "segments",
        "--workers",
        "1",
        "--force",
        "--json",
        "--quiet",
    ]
    for override in args.overrides:
        command += ["--set", override]
    began = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the run (its worker included): the per-core speed even on a busy machine
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return run.returncode
    summary = json.loads(run.stdout)
    scored = subprocess.run(
        [
            sys.executable,
            str(args.shared / "eval" / "seg_score.py"),
            str(mixes),
            "--audiokit",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(scored.stdout)
    result = {
        "accuracy": round(figures["accuracy"], 4),
        "speech_f1": round(figures["speech_f1"], 4),
        "music_f1": round(figures["music_f1"], 4),
        "files": figures["files"],
        "missing": figures["missing"],
        "audio_s": summary["audio_s"],
        "realtime_x": round(summary["audio_s"] / summary["wall_s"], 1),
        "realtime_x_with_startup": round(summary["audio_s"] / wall, 1),
        "realtime_x_per_cpu_second": round(summary["audio_s"] / cpu, 1),
        "realtime_x_extractor_alone_per_cpu_second": round(extractor_alone(mixes, args.overrides), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"accuracy {result['accuracy']:.4f}  speech F1 {result['speech_f1']:.4f}  music F1 {result['music_f1']:.4f}  "
            f"({result['files']} mixes, {result['audio_s'] / 60:.1f} min)\n"
            f"speed {result['realtime_x']:.0f}x real time on one worker "
            f"({result['realtime_x_with_startup']:.0f}x counting process start-up; "
            f"{result['realtime_x_per_cpu_second']:.0f}x per CPU second, start-up included; "
            f"extractor alone {result['realtime_x_extractor_alone_per_cpu_second']:.0f}x per CPU second)"
        )
    return 0


def extractor_alone(mixes: Path, overrides: list[str]) -> float:
    """Audio seconds per CPU second of the segments extractor's stream on decoded, resampled
    samples (10 s blocks), one BLAS thread: decoding and the run's machinery left out."""
    import soundfile as sf
    import soxr
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(REPO))
    from audiokit.config import load_config
    from audiokit.extractors import REGISTRY

    threadpool_limits(1)
    config = load_config(extractors=["segments"], overrides=overrides)
    extractor = REGISTRY["segments"](config.params["segments"])
    extractor.validate()
    rate = extractor.sample_rate
    signals = []
    for path in sorted(mixes.glob("*.wav")) + sorted(mixes.glob("*.flac")):
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        signals.append(soxr.resample(y, sr, rate).astype(np.float32) if sr != rate else y)
    warm = extractor.start(1, rate)  # first call: lazy imports and caches out of the timing
    warm.push(signals[0][None, : rate * 10])
    warm.finish()
    block = rate * 10
    began = time.process_time()
    for y in signals:
        stream = extractor.start(1, rate)
        for start in range(0, len(y), block):
            stream.push(y[None, start : start + block])
        stream.finish()
    cpu = time.process_time() - began
    return sum(len(y) for y in signals) / rate / cpu


if __name__ == "__main__":
    sys.exit(main())
