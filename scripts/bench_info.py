"""How long `audiokit info` takes on a large dataset.

Builds (once, under --dir) a dataset of `--files` rows in `files` (1 % failed) and an `mfcc`
table with `--frames` rows per file, written through the store's own writer, then times
`audiokit info OUT`, `info OUT --failed` and `info OUT PATH` as fresh CLI processes.

    python scripts/bench_info.py --files 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(out: Path, n_files: int, frames: int) -> None:
    import pyarrow as pa

    from audiokit import __version__
    from audiokit.discover import make_file_id
    from audiokit.extractors.base import key_columns, vector_array, vector_type
    from audiokit.store.dataset import Dataset, FileResult
    from audiokit.store.parts import StageWriter

    schema = pa.schema(
        key_columns() + [pa.field("frame", pa.int64()), pa.field("time_s", pa.float64()), pa.field("mfcc", vector_type(20))]
    )
    rng = np.random.default_rng(0)
    batch = 5000
    with Dataset(str(out), version=__version__) as dataset:
        for start in range(0, n_files, batch):
            results = []
            for i in range(start, min(n_files, start + batch)):
                relpath = f"d{i // 1000:03d}/f{i:06d}.wav"
                file_id = make_file_id(relpath)
                failed = i % 100 == 99
                row = {
                    "file_id": file_id, "path": f"/corpus/{relpath}", "relpath": relpath, "size_bytes": 320044,
                    "mtime_ns": 0, "duration_s": None if failed else 10.0, "sample_rate": 16000, "channels": 1,
                    "format": "WAV/PCM_16", "status": "error" if failed else "ok",
                    "error_kind": "decode" if failed else None, "error": "bench" if failed else None,
                    "config_hash": "bench", "extractors": [], "processed_at": 0,
                }
                staged = {}
                if not failed:
                    path = dataset.staging_path(file_id, "mfcc")
                    writer = StageWriter(path, schema)
                    frame = np.arange(frames, dtype=np.int64)
                    writer.write(
                        pa.RecordBatch.from_arrays(
                            [pa.array([file_id] * frames), pa.array(np.zeros(frames, np.int32)), pa.array(frame),
                             pa.array(frame * 512 / 22050), vector_array(rng.standard_normal((frames, 20)).astype(np.float32))],
                            schema=schema,
                        )
                    )
                    writer.commit()
                    staged = {"mfcc": path}
                results.append(FileResult(file_id, row, staged, (), {"mfcc": frames} if staged else {}))
            dataset.commit(results, schemas={"mfcc": schema}, config={"chain": ["mfcc"]}, config_hash="bench")
            print(f"  {min(n_files, start + batch):,} files", file=sys.stderr)
    os.makedirs(out / "_audiokit", exist_ok=True)


def timed(args: list[str], rounds: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "audiokit", *args], capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=10, help="mfcc rows per file")
    parser.add_argument("--dir", default="/tmp/audiokit-bench-info")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.dir) / f"ds-{args.files}-{args.frames}"
    if not (out / "files").is_dir():
        print(f"building {out} …", file=sys.stderr)
        build(out, args.files, args.frames)
    import pyarrow.dataset as ds

    rows = ds.dataset(str(out / "mfcc")).count_rows()
    print(f"dataset: {args.files:,} files rows, {rows:,} mfcc rows; median of {args.rounds} fresh CLI runs")
    baseline = timed(["--version"], args.rounds)
    for label, cli_args in (
        ("info OUT", ["info", str(out)]),
        ("info OUT --json", ["info", str(out), "--json"]),
        ("info OUT --failed", ["info", str(out), "--failed"]),
        ("info OUT PATH", ["info", str(out), "d050/f050000.wav"]),
    ):
        print(f"  {label:<20} {timed(cli_args, args.rounds):6.2f} s")
    print(f"  (interpreter + CLI start-up alone, `audiokit --version`: {baseline:.2f} s)")


if __name__ == "__main__":
    main()
