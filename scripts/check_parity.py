#!/usr/bin/env python3
"""audiokit's MFCC (with deltas) and chroma vs `librosa.load(path, sr=…, mono=True)` +
`librosa.feature.mfcc` / `librosa.feature.delta` / `librosa.feature.chroma_stft` on real recordings.

    python scripts/check_parity.py ../shared/data --per-group 3

Picks a few files per (format, sample rate, channels) group, runs `audiokit extract -x
mfcc,chroma --set mfcc.deltas=2` with librosa's defaults and with a 16 kHz speech setting, and
prints, per file and column, the frame counts and max|Δ| relative to the reference's peak.
Exits 1 if any column of any file is off by more than 1e-4 of the peak or has a different frame
count.
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
STFT_KEYS = ("sr", "n_fft", "hop_length")  # the settings chroma shares
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
    worst: dict[str, float] = {}
    dust = [0]  # chroma frames left out
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files) + "\n")
        for name, params in SETTINGS.items():
            out = os.path.join(tmp, name)
            chroma_params = {k: v for k, v in params.items() if k in STFT_KEYS}
            sets = [a for k, v in params.items() for a in ("--set", f"mfcc.{k}={v}")]
            sets += [a for k, v in chroma_params.items() for a in ("--set", f"chroma.{k}={v}")]
            cmd = [
                sys.executable, "-m", "audiokit", "extract", "--files-from", listing, "-o", out, "-x", "mfcc,chroma",
                "--json", "--quiet", "--set", "mfcc.deltas=2", *sets,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            summary = json.loads(proc.stdout)
            tables = {t: ds.dataset(os.path.join(out, t)).to_table() for t in ("mfcc", "chroma")}
            rows = {r["path"]: r for r in ds.dataset(os.path.join(out, "files")).to_table().to_pylist()}
            sr = params.get("sr", 22050)
            kwargs = {k: v for k, v in params.items() if k != "sr"}
            chroma_kwargs = {k: v for k, v in chroma_params.items() if k != "sr"}
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
                mfcc = librosa.feature.mfcc(y=y, sr=sr, **kwargs)
                # librosa refuses deltas of fewer frames than their width; audiokit writes NaN.
                short = mfcc.shape[1] < 9
                references = {
                    ("mfcc", "mfcc"): mfcc,
                    ("mfcc", "mfcc_delta"): np.full_like(mfcc, np.nan) if short else librosa.feature.delta(mfcc),
                    ("mfcc", "mfcc_delta2"): np.full_like(mfcc, np.nan) if short else librosa.feature.delta(mfcc, order=2),
                    ("chroma", "chroma"): librosa.feature.chroma_stft(y=y, sr=sr, **chroma_kwargs),
                }
                errors = []
                for (table, column), ref in references.items():
                    ref = ref.T
                    mine = tables[table].filter(pc.equal(tables[table]["file_id"], row["file_id"])).sort_by("frame")
                    ours = np.stack(mine[column].to_numpy(zero_copy_only=False))
                    if ours.shape != ref.shape:
                        print(f"  FAIL {label}: {column} frames {ours.shape[0]} vs librosa {ref.shape[0]}")
                        failures += 1
                        errors.append(float("inf"))
                        continue
                    if column == "chroma":
                        # Per-frame max normalisation turns frames of numerical dust (a resampler's
                        # tail, > 120 dB below the loudest frame) into noise: those are left out.
                        energy = np.abs(librosa.stft(y, n_fft=chroma_kwargs.get("n_fft", 2048), hop_length=chroma_kwargs.get("hop_length", 512))) ** 2
                        energy = energy.sum(axis=0)
                        audible = energy >= energy.max() * 1e-12
                        ours, ref = ours[audible], ref[audible]
                        dust[0] += int((~audible).sum())
                    if np.isnan(ref).all():
                        err = 0.0 if np.isnan(ours).all() else float("inf")
                    else:
                        err = float(np.abs(ours - ref).max() / np.abs(ref).max())
                    worst[column] = max(worst.get(column, 0.0), err)
                    failures += err > TOLERANCE
                    errors.append(err)
                status = "ok  " if max(errors) <= TOLERANCE else "FAIL"
                print(f"  {status} " + " ".join(f"{e:.1e}" for e in errors) + f"  {ours.shape[0]:>6} frames  {label}")
    print("\ncolumns per file: mfcc, mfcc_delta, mfcc_delta2, chroma")
    figures = ", ".join(f"{column} {value:.2e}" for column, value in worst.items())
    print(f"{len(files)} files × {len(SETTINGS)} settings; worst max|Δ|/peak: {figures}; failures = {failures}")
    print(f"chroma frames > 120 dB below their file's loudest, left out: {dust[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
