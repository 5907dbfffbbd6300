#!/usr/bin/env python3
"""audiokit's `loudness` vs pyloudnorm (and FFmpeg's ebur128 filter through PyAV) on real recordings.

    python scripts/check_loudness.py ../shared/data --count 40

Picks recordings across (sample rate, channels) groups, runs `audiokit extract -x loudness`
and prints, per file, audiokit's integrated loudness, LRA and peaks beside pyloudnorm's
integrated loudness (and ebur128's I, LRA and true peak when `--ffmpeg`). Exits 1 if any
integrated loudness differs from pyloudnorm's by more than 0.1 LU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

import numpy as np
import pyarrow.dataset as ds
import soundfile as sf

TOLERANCE_LU = 0.1


def pick_files(root: str, count: int, min_seconds: float = 0.5, max_seconds: float = 120.0) -> list[str]:
    """Up to `count` files readable by libsndfile, `min_seconds` to `max_seconds`, spread over
    (sample rate, channels) groups round-robin so mono, stereo and 8–48 kHz all appear."""
    groups = defaultdict(list)
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for name in sorted(names):
            if name.rsplit(".", 1)[-1].lower() not in ("wav", "flac", "ogg", "mp3"):
                continue
            path = os.path.join(dirpath, name)
            try:
                info = sf.info(path)
            except Exception:
                continue
            if not min_seconds <= info.duration <= max_seconds or info.channels > 2 or not 8000 <= info.samplerate <= 48000:
                continue
            groups[(info.samplerate, info.channels)].append(path)
    chosen: list[str] = []
    queues = [groups[k] for k in sorted(groups)]
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    return chosen


def pyloudnorm_lufs(path: str, filter_class: str = "DeMan") -> float:
    """pyloudnorm's integrated loudness. Its "DeMan" filters are BS.1770-4's K-weighting (the
    48 kHz coefficients of the standard, the same curve at other rates); its default
    "K-weighting" is an RBJ-cookbook approximation that reads 0.04 LU low at 48 kHz and drifts
    further at low rates (0.25 LU at 8 kHz), so the tolerance is checked against "DeMan"."""
    import pyloudnorm

    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return float(pyloudnorm.Meter(rate, filter_class=filter_class).integrated_loudness(data))


def ebur128(path: str) -> dict[str, float]:
    """FFmpeg's ebur128 filter (true peak on) run through PyAV; its final I, LRA and peak."""
    import av
    import av.filter

    with av.open(path) as container:
        stream = container.streams.audio[0]
        graph = av.filter.Graph()
        src = graph.add_abuffer(template=stream)
        meter = graph.add("ebur128", "peak=true:metadata=1")
        sink = graph.add("abuffersink")
        src.link_to(meter)
        meter.link_to(sink)
        graph.configure()
        last = {}
        for frame in container.decode(stream):
            graph.push(frame)
            last = _drain(graph, last)
        graph.push(None)
        last = _drain(graph, last)
    return last


def _drain(graph, last: dict) -> dict:
    import av

    while True:
        try:
            out = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return last
        meta = {k: v for k, v in out.metadata.items()} if hasattr(out, "metadata") else {}
        if "lavfi.r128.I" in meta:
            last = {
                "I": float(meta["lavfi.r128.I"]),
                "LRA": float(meta.get("lavfi.r128.LRA", "nan")),
                # ebur128 reports true peaks as linear amplitudes
                "TP": 20 * np.log10(max(float(v) for k, v in meta.items() if k.startswith("lavfi.r128.true_peaks_ch")) or 1e-20),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--ffmpeg", action="store_true", help="also run FFmpeg's ebur128 filter (PyAV)")
    args = parser.parse_args()
    files = [os.path.abspath(p) for p in pick_files(args.root, args.count, args.min_seconds)]
    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files) + "\n")
        out = os.path.join(tmp, "out")
        cmd = [sys.executable, "-m", "audiokit", "extract", "--files-from", listing, "-o", out, "-x", "loudness", "--json", "--quiet"]
        summary = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
        rows = {r["file_id"]: r for r in ds.dataset(os.path.join(out, "loudness")).to_table().to_pylist()}
        by_path = {r["path"]: rows.get(r["file_id"]) for r in ds.dataset(os.path.join(out, "files")).to_table().to_pylist()}
    print(f"{summary['processed']} files, {summary['failed']} failed")
    header = f"{'Δ pyln':>7} {'I':>7} {'pyln':>7} {'Δ dflt':>7} {'LRA':>5} {'SP':>6} {'TP':>6}"
    if args.ffmpeg:
        header += f" {'Δ ff':>6} {'ff I':>7} {'ff LRA':>6} {'ff TP':>6}"
    print(header + "  file (rate, channels)")
    worst, failures, compared = 0.0, 0, 0
    for path in files:
        row = by_path.get(path)
        info = sf.info(path)
        label = f"{os.path.relpath(path, args.root)} ({info.samplerate} Hz, {info.channels} ch)"
        if row is None:
            print(f"  FAIL no row: {label}")
            failures += 1
            continue
        ours, theirs = row["integrated_lufs"], pyloudnorm_lufs(path)
        if ours is None or not np.isfinite(theirs) or not np.isfinite(ours):
            print(f"  skip (I undefined: ours {ours}, pyloudnorm {theirs}) {label}")
            continue
        delta = ours - theirs
        compared += 1
        worst = max(worst, abs(delta))
        failures += abs(delta) > TOLERANCE_LU
        default = pyloudnorm_lufs(path, "K-weighting")
        line = f"{delta:+7.3f} {ours:7.2f} {theirs:7.2f} {ours - default:+7.3f} {row['lra_lu'] if row['lra_lu'] is not None else float('nan'):5.1f} {row['sample_peak_dbfs']:6.2f} {row['true_peak_dbtp']:6.2f}"
        if args.ffmpeg:
            ff = ebur128(path)
            line += f" {ours - ff['I']:+6.2f} {ff['I']:7.2f} {ff['LRA']:6.1f} {ff['TP']:6.2f}" if ff else "  (ebur128 gave nothing)"
        print(line + "  " + label)
    print(f"\n{compared} files compared; worst |Δ| vs pyloudnorm (DeMan filters) = {worst:.3f} LU; over {TOLERANCE_LU} LU: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
