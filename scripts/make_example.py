#!/usr/bin/env python3
"""Write a few seconds of synthetic audio in several formats, for a first run of audiokit.

    python scripts/make_example.py example/
    audiokit extract example/ -o example-out/

Nothing is downloaded: tones, chirps, noise and a speech-like buzz are generated here.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import soundfile as sf


def signals(sr: int, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(int(sr * seconds)) / sr
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 2000 * t**2 / seconds))
    # A buzz with a syllable-rate envelope: a crude stand-in for voiced speech.
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    buzz = envelope * 0.3 * np.sign(np.sin(2 * np.pi * 120 * t)) * np.exp(-((t % 0.25) * 8))
    noise = 0.05 * rng.standard_normal(t.size)
    return {"chord": chord, "chirp": chirp, "speechlike": buzz + 0.01 * noise, "noise": noise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="directory to write into")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(args.out, "music"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "speech"), exist_ok=True)
    written = []
    layouts = [
        ("music/chord.wav", "chord", 44100, 2, {"subtype": "PCM_16"}),
        ("music/chirp.flac", "chirp", 48000, 1, {}),
        ("speech/speechlike.ogg", "speechlike", 16000, 1, {"format": "OGG", "subtype": "VORBIS"}),
        ("speech/speechlike.mp3", "speechlike", 22050, 1, {"format": "MP3", "subtype": "MPEG_LAYER_III"}),
        ("noise.wav", "noise", 8000, 1, {"subtype": "FLOAT"}),
    ]
    for relpath, name, sr, channels, kwargs in layouts:
        y = signals(sr, args.seconds, rng)[name]
        if channels == 2:
            y = np.stack([y, 0.5 * y], axis=1)
        path = os.path.join(args.out, relpath)
        sf.write(path, y.astype(np.float32), sr, **kwargs)
        written.append(path)
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write("Synthetic example audio written by scripts/make_example.py (not audio: ignored).\n")
    print("\n".join(written))


if __name__ == "__main__":
    main()
