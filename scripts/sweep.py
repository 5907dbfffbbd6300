#!/usr/bin/env python3
"""Robustness sweep: run audiokit over a directory of real (and deliberately damaged) audio and
check every file against FFmpeg's own verdict.

    python scripts/sweep.py ../shared/data --damaged 60

Adds `--damaged N` broken copies of real files (truncated, bit-flipped, header-zeroed, absurd
sizes, mislabelled extensions) in a temporary folder, runs `audiokit extract` once over both,
then checks: exit status 0 or 1 and no traceback; a `files` row for every audio file; every file
that `ffmpeg` decodes is `ok` with a duration within 2 % of FFmpeg's and has feature rows; every
failure has an error kind and message. Prints the failures by kind and exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

import pyarrow.dataset as ds

AUDIO_EXTS = {"wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "sph", "aif", "aiff", "au", "webm", "wma", "mka"}


def ffmpeg_duration(path: str) -> float | None:
    """Seconds of audio FFmpeg decodes from the first audio stream, or None if it cannot."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate", "-of", "json", path],
        capture_output=True, text=True, timeout=60,
    )
    try:
        rate = int(json.loads(probe.stdout)["streams"][0]["sample_rate"])
    except (ValueError, KeyError, IndexError, json.JSONDecodeError):
        return None
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"],
        capture_output=True, timeout=300,
    )
    samples = len(decode.stdout) // 4
    if decode.returncode != 0 and samples == 0:
        return None
    return samples / rate if samples else None


def make_damaged(sources: list[str], out_dir: str, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(count):
        src = rng.choice(sources)
        data = bytearray(open(src, "rb").read())
        ext = src.rsplit(".", 1)[-1]
        kind = rng.choice(["truncate", "bitflip", "zero_header", "huge_size", "mislabel", "empty", "tail_garbage"])
        if kind == "truncate":
            data = data[: rng.randint(0, max(1, len(data) - 1))]
        elif kind == "bitflip":
            for _ in range(rng.randint(1, 50)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif kind == "zero_header":
            data[: min(64, len(data))] = bytes(min(64, len(data)))
        elif kind == "huge_size" and len(data) > 8:
            data[4:8] = b"\xff\xff\xff\x7f"  # RIFF/frame sizes claiming ~2 GB
        elif kind == "mislabel":
            ext = rng.choice(["mp3", "wav", "flac", "ogg"])
        elif kind == "empty":
            data = bytearray()
        elif kind == "tail_garbage":
            data += os.urandom(rng.randint(1, 4096))
        with open(os.path.join(out_dir, f"damaged_{i:03d}_{kind}.{ext}"), "wb") as f:
            f.write(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--damaged", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        print("needs ffmpeg/ffprobe on PATH (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    root = os.path.abspath(args.root)
    sources = sorted(
        os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.rsplit(".", 1)[-1].lower() in AUDIO_EXTS
    )
    with tempfile.TemporaryDirectory() as tmp:
        damaged = os.path.join(tmp, "damaged")
        make_damaged([s for s in sources if os.path.getsize(s) < 5_000_000], damaged, args.damaged)
        out = os.path.join(tmp, "out")
        proc = subprocess.run(
            [sys.executable, "-m", "audiokit", "extract", root, damaged, "-o", out, "--json", "--quiet", "--workers", str(args.workers)],
            capture_output=True, text=True,
        )
        problems = []
        if proc.returncode not in (0, 1):
            problems.append(f"exit status {proc.returncode}: {proc.stderr[-2000:]}")
        if "Traceback" in proc.stderr:
            problems.append("a traceback reached stderr")
        summary = json.loads(proc.stdout)
        files = {r["path"]: r for r in ds.dataset(os.path.join(out, "files")).to_table().to_pylist()}
        with_rows = set(ds.dataset(os.path.join(out, "mfcc")).to_table(columns=["file_id"])["file_id"].unique().to_pylist())
        inputs = sources + sorted(os.path.join(damaged, n) for n in os.listdir(damaged))
        kinds = Counter()
        checked = 0
        for path in inputs:
            row = files.get(path)
            if row is None:
                problems.append(f"no files row: {path}")
                continue
            expected = ffmpeg_duration(path)
            if row["status"] == "error":
                kinds[row["error_kind"]] += 1
                if not row["error"] or not row["error_kind"]:
                    problems.append(f"error without a reason: {path}")
                if expected is not None and expected > 0.05:
                    problems.append(f"ffmpeg decodes {expected:.2f} s but audiokit failed: {path}: {row['error']}")
                continue
            if expected is not None:
                checked += 1
                if abs(row["duration_s"] - expected) > 0.02 * expected + 0.03:
                    problems.append(f"duration {row['duration_s']:.3f} s vs ffmpeg {expected:.3f} s: {path}")
            if row["file_id"] not in with_rows and row["duration_s"] > 0:
                problems.append(f"ok but no feature rows: {path}")
    print(f"inputs: {len(sources)} real + {args.damaged} damaged; exit {proc.returncode}; {summary['processed']} processed, "
          f"{summary['failed']} failed, {summary['audio_s'] / 3600:.2f} h in {summary['wall_s']:.1f} s")
    print(f"durations checked against ffmpeg: {checked}; failures by kind: {dict(kinds)}")
    for p in problems:
        print("PROBLEM", p)
    print(f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
