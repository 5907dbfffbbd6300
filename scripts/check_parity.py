#!/usr/bin/env python3
"""audiokit's MFCC vs `librosa.load(path, sr=…, mono=True)` + `librosa.feature.mfcc` on real recordings.

    python scripts/check_parity.py ../shared/data --per-group 3

Picks a few files per (format, sample rate, channels) group, runs `audiokit extract -x mfcc`
with librosa's defaults and with a 16 kHz speech setting, and prints, per file, the frame
counts and max|Δ| relative to the reference's peak. Exits 1 if any file is off by more than
1e-4 of the peak or has a different frame count.
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
import pyarrow.compute as pc
import pyarrow.dataset as ds
import soundfile as sf

SETTINGS = {
    "defaults": {},
    "speech16k": {"sr": 16000, "n_mfcc": 40, "n_fft": 512, "hop_length": 160, "n_mels": 64, "fmin": 20.0, "fmax": 7600.0},
}
TOLERANCE = 1e-4


def pick_files(root: str, per_group: int) -> list[str]:
    groups = defaultdict(list)
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            ext = name.rsplit(".", 1)[-1].lower()
            if ext not in ("wav", "flac", "mp3", "ogg", "opus"):
                continue
            try:
                info = sf.info(path)
            except Exception:
                continue  # librosa (soundfile) cannot read it either: nothing to compare
            if info.frames < 256 or info.duration > 120:
                continue
            groups[(ext, info.samplerate, info.channels)].append(path)
    chosen = []
    for key in sorted(groups):
        chosen += groups[key][:per_group]
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--per-group", type=int, default=3)
    args = parser.parse_args()
    import librosa

    files = [os.path.abspath(p) for p in pick_files(args.root, args.per_group)]
    worst_overall = 0.0
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files) + "\n")
        for name, params in SETTINGS.items():
            out = os.path.join(tmp, name)
            sets = [a for k, v in params.items() for a in ("--set", f"mfcc.{k}={v}")]
            cmd = [sys.executable, "-m", "audiokit", "extract", "--files-from", listing, "-o", out, "-x", "mfcc", "--json", "--quiet", *sets]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            summary = json.loads(proc.stdout)
            mfcc = ds.dataset(os.path.join(out, "mfcc")).to_table()
            rows = {r["path"]: r for r in ds.dataset(os.path.join(out, "files")).to_table().to_pylist()}
            sr = params.get("sr", 22050)
            kwargs = {k: v for k, v in params.items() if k != "sr"}
            print(f"\n== {name}: {summary['processed']} files, {summary['failed']} failed")
            for path in files:
                row = rows[path]
                info = sf.info(path)
                label = f"{os.path.relpath(path, args.root)} ({info.format}/{info.subtype}, {info.samplerate} Hz, {info.channels} ch)"
                if row["status"] != "ok":
                    print(f"  FAIL {label}: {row['error']}")
                    failures += 1
                    continue
                y, _ = librosa.load(path, sr=sr, mono=True)
                ref = librosa.feature.mfcc(y=y, sr=sr, **kwargs).T
                mine = mfcc.filter(pc.equal(mfcc["file_id"], row["file_id"])).sort_by("frame")
                ours = np.stack(mine["mfcc"].to_numpy(zero_copy_only=False))
                if ours.shape != ref.shape:
                    print(f"  FAIL {label}: frames {ours.shape[0]} vs librosa {ref.shape[0]}")
                    failures += 1
                    continue
                err = float(np.abs(ours - ref).max() / np.abs(ref).max())
                worst_overall = max(worst_overall, err)
                status = "ok  " if err <= TOLERANCE else "FAIL"
                failures += err > TOLERANCE
                print(f"  {status} {err:.2e}  {ours.shape[0]:>6} frames  {label}")
    print(f"\n{len(files)} files × {len(SETTINGS)} settings; worst max|Δ|/peak = {worst_overall:.2e}; failures = {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
