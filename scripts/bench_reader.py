#!/usr/bin/env python3
"""How fast the reader is: one file out of a 10^5-file dataset, and a DataLoader epoch.

    python scripts/bench_reader.py                 # both
    python scripts/bench_reader.py --files 100000  # the big dataset only (--skip-loader)

1. A dataset of `--files` files (default 10^5) with an `mfcc` table (20 coefficients, 2 s per
   file at the default 22.05 kHz / hop 512: 87 frames, 8.7 M rows in all), written through the
   store's own commit path in batches of 64 files, as one long `audiokit extract` run commits
   them (staged Arrow files, a part per batch per table, `files` last): ~1,560 parts per table.
   Then the same dataset after the next run's open has compacted those small parts (merged
   parts of ~64 MB). The values are synthetic (smooth random walks); sizes, part layout, row
   groups and metadata are what a run writes. For each layout, in a fresh process each time:
   import, `audiokit.open`, the first file's frames, then 20 more random files' frames.
2. An epoch of `ds.torch("mfcc")` through `torch.utils.data.DataLoader` over the bench corpus
   (scripts/bench.py's 34-minute corpus, `audiokit extract -x mfcc`): per file (batch 8) and in
   windows of 128 frames, hop 64 (batch 64, shuffled), with 0 and 2 workers; frames/s counts the
   frames of features delivered, padding excluded. Epoch 1 starts from a fresh reader (every
   file read from Parquet, OS page cache warm, worker start-up included); epoch 2 runs on the
   same persistent workers, whose frame caches then hold the corpus (7 MB of MFCCs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FRAMES_PER_FILE = 87  # 2 s at 22050 Hz, hop 512, centred frames
N_MFCC = 20
COMMIT_FILES = 64  # audiokit.api.COMMIT_EVERY_FILES


def build_big(root: Path, n_files: int) -> None:
    import pyarrow as pa

    from audiokit import __version__
    from audiokit.api import COMMIT_EVERY_FILES
    from audiokit.discover import make_file_id
    from audiokit.store.arrays import numeric, repeated
    from audiokit.store.dataset import Dataset, FileResult
    from audiokit.store.parts import StageWriter

    assert COMMIT_EVERY_FILES == COMMIT_FILES
    marker = root / ".complete"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    schema = pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("channel", pa.int32(), nullable=False),
            pa.field("frame", pa.int64(), nullable=False),
            pa.field("time_s", pa.float64(), nullable=False),
            pa.field("mfcc", pa.list_(pa.float32(), N_MFCC)),
        ]
    )
    rng = np.random.default_rng(0)
    frames = np.arange(FRAMES_PER_FILE, dtype=np.int64)
    started = time.monotonic()
    with Dataset(str(root), version=__version__) as dataset:
        for batch_start in range(0, n_files, COMMIT_FILES):
            results = []
            for i in range(batch_start, min(batch_start + COMMIT_FILES, n_files)):
                relpath = f"shard{i // 1000:03d}/clip{i:06d}.flac"
                file_id = make_file_id(relpath)
                values = np.cumsum(rng.standard_normal((FRAMES_PER_FILE, N_MFCC)).astype(np.float32), axis=0)
                batch = pa.RecordBatch.from_arrays(
                    [
                        repeated(file_id, FRAMES_PER_FILE),
                        numeric(np.zeros(FRAMES_PER_FILE, np.int32)),
                        numeric(frames),
                        numeric(frames * (512 / 22050)),
                        pa.FixedSizeListArray.from_arrays(numeric(values), N_MFCC),
                    ],
                    schema=schema,
                )
                writer = StageWriter(dataset.staging_path(file_id, "mfcc"), schema)
                writer.write(batch)
                row = {
                    "file_id": file_id,
                    "path": f"/audio/{relpath}",
                    "relpath": relpath,
                    "size_bytes": 60000,
                    "mtime_ns": 1,
                    "duration_s": 2.0,
                    "sample_rate": 44100,
                    "channels": 1,
                    "format": "FLAC/PCM_16",
                    "status": "ok",
                    "error_kind": None,
                    "error": None,
                    "config_hash": "bench",
                    "extractors": ["mfcc:bench"],
                    "processed_at": int(time.time() * 1000),
                }
                results.append(
                    FileResult(file_id, row, staged={"mfcc": writer.commit()}, rows={"mfcc": FRAMES_PER_FILE})
                )
            dataset.commit(results, schemas={"mfcc": schema}, config={"chain": ["mfcc"]}, config_hash="bench")
            if batch_start % 10000 == 0:
                print(f"  {batch_start:,} files written, {time.monotonic() - started:.0f} s", file=sys.stderr)
    marker.write_text("ok")


def parts_of(root: Path) -> dict[str, int]:
    return {t: len(list((root / t).glob("part-*.parquet"))) for t in ("files", "mfcc")}


PROBE = """
import time, random, sys, json
t0 = time.perf_counter()
import audiokit
t1 = time.perf_counter()
ds = audiokit.open(sys.argv[1])
t2 = time.perf_counter()
X = ds.frames("mfcc", ds.files.column("relpath")[ds.files.num_rows // 2].as_py())
t3 = time.perf_counter()
relpaths = random.Random(1).sample(ds.files.column("relpath").to_pylist(), 20)
times = []
for r in relpaths:
    s = time.perf_counter(); ds.frames("mfcc", r); times.append(time.perf_counter() - s)
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_frames_s": t3 - t2, "shape": X.shape,
                  "next_frames_median_s": sorted(times)[10], "files": ds.files.num_rows}))
"""


def probe(root: Path, repeats: int = 3) -> dict:
    runs = []
    for _ in range(repeats):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(root)], capture_output=True, text=True, env=env, check=True
        )
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r["open_s"] + r["first_frames_s"])
    best["open_plus_first_frames_s"] = best["open_s"] + best["first_frames_s"]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()}


def big_dataset(args) -> dict:
    root = Path(args.big_dir)
    started = time.monotonic()
    build_big(root, args.files)
    built_s = time.monotonic() - started
    result = {"files": args.files, "rows": args.files * FRAMES_PER_FILE, "build_s": round(built_s, 1)}
    result["one_run"] = {"parts": parts_of(root), **probe(root)}
    compacted = Path(str(root) + "-compacted")
    if not (compacted / ".complete").exists():
        shutil.rmtree(compacted, ignore_errors=True)
        shutil.copytree(root, compacted)
        from audiokit import __version__
        from audiokit.store.dataset import Dataset

        with Dataset(str(compacted), version=__version__):  # what the next run's open does
            pass
    result["compacted"] = {"parts": parts_of(compacted), **probe(compacted)}
    result["bytes_mfcc"] = sum(p.stat().st_size for p in (compacted / "mfcc").glob("part-*.parquet"))
    return result


def loader_epochs(args) -> dict:
    import torch

    import audiokit
    from scripts.bench import build_corpus

    corpus = Path(args.corpus)
    paths = build_corpus(corpus)
    out = Path(tempfile.gettempdir()) / "audiokit-bench-reader-mfcc"
    if not (out / "_audiokit").exists():
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(
            [sys.executable, "-m", "audiokit", "extract", str(corpus), "-o", str(out), "-x", "mfcc", "--quiet"],
            check=True,
            env=env,
        )
    torch.set_num_threads(1)
    result = {"corpus_files": len(paths), "mfcc_rows": audiokit.open(str(out)).tables["mfcc"].rows}
    settings = {
        "per_file_batch8": ({}, {"batch_size": 8}),
        "windows128_hop64_batch64_shuffled": (
            {"window_frames": 128, "hop_frames": 64},
            {"batch_size": 64, "shuffle": True},
        ),
    }
    for name, (data_options, loader_options) in settings.items():
        for workers in (0, 2):
            best = [None, None]
            for _ in range(args.rounds):
                # A fresh reader each round: epoch 1 reads every file (warm OS page cache), epoch 2
                # is served from the cache each process keeps (persistent workers).
                data = audiokit.open(str(out)).torch("mfcc", **data_options)
                loader = torch.utils.data.DataLoader(
                    data, num_workers=workers, collate_fn=data.collate, persistent_workers=workers > 0, **loader_options
                )
                for epoch in (0, 1):
                    frames = 0
                    start = time.perf_counter()
                    for batch in loader:
                        frames += int(batch["lengths"].sum())
                    seconds = time.perf_counter() - start
                    best[epoch] = seconds if best[epoch] is None else min(best[epoch], seconds)
                del loader
            result[f"{name}_workers{workers}"] = {
                "items": len(data),
                "frames": frames,
                "epoch1_s": round(best[0], 3),
                "epoch1_frames_per_s": round(frames / best[0]),
                "epoch2_s": round(best[1], 3),
                "epoch2_frames_per_s": round(frames / best[1]),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--big-dir", default=None, help="default: $TMPDIR/audiokit-bench-reader-<files>")
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "audiokit-bench-corpus"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-loader", action="store_true")
    args = parser.parse_args()
    args.big_dir = args.big_dir or os.path.join(tempfile.gettempdir(), f"audiokit-bench-reader-{args.files}")
    result = {}
    if not args.skip_big:
        result["big_dataset"] = big_dataset(args)
    if not args.skip_loader:
        result["dataloader"] = loader_epochs(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
