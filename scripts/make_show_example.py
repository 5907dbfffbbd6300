#!/usr/bin/env python3
"""The README's picture: `audiokit show` on a recording generated here.

    python scripts/make_show_example.py            # writes docs/show-example.png

Twenty seconds at 22.05 kHz, generated in code (nothing downloaded): a speech-like buzz with a
syllable-rate envelope and a falling pitch, a pause, a three-note chord with a beat, digital
silence, then noise. It is extracted with `-x logmel,spectral,segments` into a temporary
dataset and drawn by `audiokit show` (the same command users run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent


def recording(sr: int = 22050) -> np.ndarray:
    rng = np.random.default_rng(7)

    def seconds(n: float) -> np.ndarray:
        return np.arange(int(sr * n)) / sr

    t = seconds(6.0)
    pitch = 140 - 30 * t / t[-1] + 12 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * 3.2 * t + 0.5 * np.sin(2 * np.pi * 0.4 * t)), 0, None) ** 1.5
    speech = 0.25 * syllables * voiced + 0.004 * rng.standard_normal(t.size)
    pause = 0.003 * rng.standard_normal(int(sr * 1.0))
    t = seconds(7.0)
    chord = sum(0.12 * np.sin(2 * np.pi * f * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.25 * t)) for f in (261.6, 329.6, 392.0, 523.3))
    beat = 0.35 * np.exp(-((t * 2.0) % 1.0) * 25) * rng.standard_normal(t.size)
    music = chord + beat
    silence = np.zeros(int(sr * 2.0))
    noise = 0.15 * rng.standard_normal(int(sr * 4.0))
    return np.concatenate([speech, pause, music, silence, noise]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "show-example.png"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "audio" / "demo"
        audio.mkdir(parents=True)
        sf.write(str(audio / "talk-then-music.flac"), recording(), 22050, subtype="PCM_16")
        out = Path(tmp) / "out"
        run = [sys.executable, "-m", "audiokit"]
        subprocess.run([*run, "extract", str(audio.parent), "-o", str(out), "-x", "logmel,spectral,segments", "--quiet"], check=True, env=env)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        subprocess.run([*run, "show", str(out), "demo/talk-then-music.flac", "-o", args.output], check=True, env=env)
    print(f"{args.output}: {os.path.getsize(args.output) / 1000:.0f} kB")


if __name__ == "__main__":
    main()
