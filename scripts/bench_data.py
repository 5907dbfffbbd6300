#!/usr/bin/env python3
"""The README's figures on a directory of real recordings: both backends end to end, their
parity, and an unchanged re-run.

    python scripts/bench_data.py ../shared/data [--workers 2]

Each run is a fresh `audiokit extract` process, as a user starts it:
  end to end   `audiokit extract DIR -o OUT -x mfcc,logmel,spectral --backend numpy|torch
               --device cpu --workers N`: × real time from the run's own `--json` summary
  parity       the two outputs above, table by table: per column the largest |numpy - torch|
               over the column's peak |value|, the frames above 1e-5 of it, and for rolloff
               (a bin frequency) the frames one bin apart
  re-run       `audiokit extract DIR -o OUT -x mfcc --no-retry-failed --workers N` on a fresh
               output, then the same command again (nothing changed): both wall times
Prints one JSON object. Needs torch for the torch backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CHAIN = "mfcc,logmel,spectral"


def extract(inputs: str, out: str, *args: str) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "audiokit", "extract", inputs, "-o", out, *args, "--json", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: some files of the directory are broken on purpose
        raise SystemExit(f"audiokit failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout), wall


def read(out: Path, table: str):
    import pyarrow.dataset as ds

    keys = [("file_id", "ascending"), ("channel", "ascending"), ("frame", "ascending")]
    return ds.dataset(str(out / table)).to_table().sort_by(keys)


def column_array(table, name: str) -> np.ndarray:
    import pyarrow as pa

    array = table[name].combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        return np.asarray(array.flatten(), dtype=np.float64).reshape(len(array), array.type.list_size)
    return np.asarray(array, dtype=np.float64)


def parity(numpy_out: Path, torch_out: Path) -> dict:
    report = {}
    for table in CHAIN.split(","):
        ref, act = read(numpy_out, table), read(torch_out, table)
        entry = report[table] = {"frames": ref.num_rows}
        for key in ("file_id", "channel", "frame"):
            if ref[key] != act[key]:
                entry["rows_equal"] = False
                break
        else:
            entry["rows_equal"] = True
        if not entry["rows_equal"]:
            continue
        for name in ref.schema.names[4:]:
            a, b = column_array(ref, name), column_array(act, name)
            delta = np.abs(a - b)
            per_frame = delta.reshape(len(a), -1).max(axis=1)
            if name == "rolloff":
                entry[name] = {"frames_differing": int(np.count_nonzero(per_frame)),
                               "max_hz": float(f"{per_frame.max():.4g}")}
                continue
            peak = max(float(np.abs(a).max()), 1e-30)
            entry[name] = {"max_over_peak": float(f"{delta.max() / peak:.3g}"),
                           "frames_above_1e-5": int(np.count_nonzero(per_frame > 1e-5 * peak))}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="a directory of recordings, e.g. ../shared/data")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    workers = ["--workers", str(args.workers)]
    report: dict = {"data": args.data}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {}
        for backend in ("numpy", "torch"):
            summary, wall = extract(args.data, str(tmp / backend), "-x", CHAIN, "--backend", backend,
                                    "--device", "cpu", *workers)
            runs[backend] = {"files": summary["files_seen"], "ok": summary["processed"] - summary["failed"],
                             "audio_min": round(summary["audio_s"] / 60, 1), "wall_s": round(wall, 2),
                             "x_realtime": round(summary["audio_s"] / wall)}
            print(f"{backend}: {runs[backend]}", file=sys.stderr, flush=True)
        report["end_to_end"] = runs
        report["parity_numpy_vs_torch"] = parity(tmp / "numpy", tmp / "torch")
        first, first_wall = extract(args.data, str(tmp / "rerun"), "-x", "mfcc", "--no-retry-failed", *workers)
        again, again_wall = extract(args.data, str(tmp / "rerun"), "-x", "mfcc", "--no-retry-failed", *workers)
        assert again["processed"] == 0, again
        report["rerun"] = {"files": first["files_seen"], "first_run_s": round(first_wall, 2),
                           "unchanged_rerun_s": round(again_wall, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
