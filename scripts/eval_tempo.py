#!/usr/bin/env python3
"""Tempo and beat accuracy of audiokit's `tempo`/`beats` beside librosa's `beat_track`.

    python scripts/eval_tempo.py ../shared/data/madmom [--synthetic 24]

Annotated recordings: every audio file under ROOT with a `<stem>.beats` (beat times, first
column) and/or `<stem>.tempo` (tempi, strongest first) file in an `annotations` folder next to
its own (madmom's layout). Synthetic: `--synthetic N` adds N generated drum patterns (kick,
snare, hi-hat with random levels, swing, fills and noise) at known tempi from 60 to 200 BPM.

Prints per file and overall: ACC1 (estimate within 4 % of the annotated tempo), ACC2 (also at
2x, 3x, 1/2 or 1/3 of it) and the beat F-measure (a detected beat within ±70 ms of an annotated
one, each matched once; no beats are trimmed), for audiokit and for librosa.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.dataset as ds
import soundfile as sf

TOLERANCE = 0.04
FACTORS = (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0)
WINDOW_S = 0.07
SR = 22050


def accuracies(estimate: float, reference: float) -> tuple[bool, bool]:
    acc1 = abs(estimate - reference) <= TOLERANCE * reference
    acc2 = any(abs(estimate - f * reference) <= TOLERANCE * f * reference for f in FACTORS)
    return acc1, acc2


def f_measure(detected: np.ndarray, annotated: np.ndarray, window: float = WINDOW_S) -> float:
    """Beat F-measure: detections matched one-to-one to annotations within ±window (greedy by
    distance)."""
    if detected.size == 0 or annotated.size == 0:
        return float(detected.size == annotated.size)
    pairs = sorted(
        (abs(d - a), i, j) for i, d in enumerate(detected) for j, a in enumerate(annotated) if abs(d - a) <= window
    )
    used_d, used_a, hits = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_d and j not in used_a:
            used_d.add(i)
            used_a.add(j)
            hits += 1
    precision, recall = hits / detected.size, hits / annotated.size
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


def annotated_files(root: str) -> list[dict]:
    items = []
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in (".wav", ".flac", ".mp3", ".ogg"):
                continue
            notes = os.path.join(os.path.dirname(dirpath), "annotations")
            beats_path, tempo_path = os.path.join(notes, stem + ".beats"), os.path.join(notes, stem + ".tempo")
            item = {"path": os.path.join(dirpath, name), "label": os.path.relpath(os.path.join(dirpath, name), root)}
            if os.path.exists(beats_path):
                item["beats"] = np.loadtxt(beats_path, comments="#", ndmin=2)[:, 0]
            if os.path.exists(tempo_path):
                item["tempo"] = float(np.loadtxt(tempo_path, comments="#", ndmin=1)[0])
            if "beats" in item or "tempo" in item:
                items.append(item)
    return items


def drum_pattern(bpm: float, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A generated drum loop at `bpm`: kick on 1 and 3, snare on 2 and 4, hi-hats on eighths
    (swung), random fills and levels, noise; returns (samples, beat times)."""
    beat = 60.0 / bpm
    n = int(seconds * SR)
    y = 0.003 * rng.standard_normal(n)
    t = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(t.size) * np.exp(-t * 25) * 0.6 + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 20)
    hat = np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t * 80) * 0.25
    swing = rng.uniform(0.0, 0.15)
    offset = rng.uniform(0.0, beat)
    beats = np.arange(offset, seconds - 0.3, beat)

    def hit(sound, at, gain):
        start = int(at * SR)
        if 0 <= start < n:
            stop = min(n, start + sound.size)
            y[start:stop] += gain * sound[: stop - start]

    for k, at in enumerate(beats):
        hit(kick if k % 2 == 0 else snare, at, rng.uniform(0.6, 1.0))
        hit(hat, at, rng.uniform(0.4, 0.8))
        hit(hat, at + beat * (0.5 + swing), rng.uniform(0.2, 0.5))
        if rng.random() < 0.08:  # a fill
            hit(snare, at + beat * 0.75, rng.uniform(0.3, 0.6))
    return (0.3 * y / np.abs(y).max()).astype(np.float32), beats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", help="folder with annotated recordings (madmom's layout)")
    parser.add_argument("--synthetic", type=int, default=24, help="generated drum patterns to add (0: none)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated pattern")
    args = parser.parse_args()
    import librosa

    items = annotated_files(args.root) if args.root else []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(16)
        for k, bpm in enumerate(np.linspace(60, 200, args.synthetic) if args.synthetic else []):
            y, beats = drum_pattern(float(bpm), args.seconds, rng)
            path = os.path.join(tmp, "synthetic", f"drums_{k:02d}_{bpm:.0f}bpm.wav")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sf.write(path, y, SR, subtype="PCM_16")
            items.append({"path": path, "label": os.path.basename(path), "beats": beats, "tempo": float(bpm)})
        if not items:
            print("nothing to evaluate")
            return 1
        listing = os.path.join(tmp, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(i["path"] for i in items) + "\n")
        out = os.path.join(tmp, "out")
        cmd = [sys.executable, "-m", "audiokit", "extract", "--files-from", listing, "-o", out, "-x", "tempo,beats", "--json", "--quiet"]
        summary = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
        paths = {r["file_id"]: r["path"] for r in ds.dataset(os.path.join(out, "files")).to_table().to_pylist()}
        tempo_rows = {paths[r["file_id"]]: r for r in ds.dataset(os.path.join(out, "tempo")).to_table().to_pylist() if r["channel"] == 0}
        beat_rows: dict[str, list[float]] = {}
        for r in ds.dataset(os.path.join(out, "beats")).to_table().to_pylist():
            if r["channel"] == 0:
                beat_rows.setdefault(paths[r["file_id"]], []).append(r["time_s"])
        print(f"audiokit: {summary['processed']} files, {summary['failed']} failed\n")
        print(f"{'ref BPM':>8} {'ours':>7} {'librosa':>7}  {'F ours':>6} {'F lib':>6}  file")
        totals = {"ours": [], "librosa": []}
        for item in items:
            y, _ = librosa.load(item["path"], sr=SR)
            lib_bpm, lib_frames = librosa.beat.beat_track(y=y, sr=SR)
            lib_bpm = float(np.atleast_1d(lib_bpm)[0])
            estimates = {
                "ours": (tempo_rows[item["path"]]["bpm"], np.array(sorted(beat_rows.get(item["path"], [])))),
                "librosa": (lib_bpm, librosa.frames_to_time(lib_frames, sr=SR)),
            }
            line = {}
            for who, (bpm, beats) in estimates.items():
                acc = accuracies(bpm, item["tempo"]) if "tempo" in item else (None, None)
                f = f_measure(beats, item["beats"]) if "beats" in item else None
                totals[who].append((*acc, f))
                line[who] = (bpm, f)
            ref = f"{item['tempo']:8.1f}" if "tempo" in item else f"{'—':>8}"
            fo = "—" if line["ours"][1] is None else f"{line['ours'][1]:.3f}"
            fl = "—" if line["librosa"][1] is None else f"{line['librosa'][1]:.3f}"
            print(f"{ref} {line['ours'][0]:7.1f} {line['librosa'][0]:7.1f}  {fo:>6} {fl:>6}  {item['label']}")
        print(f"\n{'':10} {'files':>5} {'ACC1':>6} {'ACC2':>6} {'F-measure':>9}")
        for who, rows in totals.items():
            acc1 = [r[0] for r in rows if r[0] is not None]
            acc2 = [r[1] for r in rows if r[1] is not None]
            fs = [r[2] for r in rows if r[2] is not None]
            print(f"{who:10} {len(rows):5d} {np.mean(acc1):6.3f} {np.mean(acc2):6.3f} {np.mean(fs):9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
