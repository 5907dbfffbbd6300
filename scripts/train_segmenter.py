"""Train the segments classifier shipped as `audiokit/models/segmenter-v2.npz`.

Reads a manifest of labelled audio (CSV with `path,label` for whole recordings or
`path,start,end,label` for stretches; optional `group` and `license` columns; labels speech,
music, singing (= music), noise/other), builds synthetic programmes from it the way broadcast
and podcasts look (speech, music, speech over a music bed, noise, silence, in random order)
with augmentation — gain, music beds 5–20 dB under speech, background noise, reverberation,
band-limiting to 8 kHz sampling, tilt EQ, MP3/Vorbis round trips, several source sample
rates; optionally synthetic a cappella voices / solo instrument lines as extra music and speed
perturbation of speech (both off by default; segmenter-v2 is the defaults plus
`--synthetic-music 0.15`, see its model card) — computes exactly the features inference computes (`audiokit.models.segmenter`) and
fits a small MLP with torch (training only; inference is numpy). Everything is seeded.

usage: python scripts/train_segmenter.py MANIFEST.csv [--out audiokit/models/segmenter-v2.npz]
       [--programmes 150] [--epochs 14] [--members 3] [--fresh-data] [--hidden 96,48] [--seed 0]
       [--synthetic-music 0.15] [--speech-perturb 0.5] [--version segmenter-v2]
       [--bed-snr 5,20] [--telephone 0] [--noise-under 0] [--music-shift 0] [--real-noise 0.5]
       [--kind-weights 0.3,0.28,0.2,0.12,0.1] [--singing 0.2]
       python scripts/train_segmenter.py MANIFEST.csv --conv 64 [--epochs 20] ...  (ConvNets)
       python scripts/train_segmenter.py --merge A.npz B.npz ... --out ENSEMBLE.npz [--conv-share 0.5]
                                         [--class-offsets SPEECH,MUSIC,OTHER] [--float16]
The flags after --speech-perturb are off or at v2's values by default (drawing no extra random
numbers, so v2's command builds the programmes it built); segmenter-v2.md has v2's command and
the cross-validated v3 candidate's.
Make the manifest of licence-allowed recordings with scripts/make_segmenter_manifest.py.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audiokit.models.segmenter import (  # noqa: E402 (after a guarded import)
    CLASSES,
    CONV_HALF,
    DECISION_SECONDS,
    N_FEATURES,
    SAMPLE_RATE,
    conv_inputs,
    decisions_of,
)

SR = SAMPLE_RATE
# Singing trains as music but has its own pool: it is scarce, so music pieces draw on it often.
LABEL_OF = {
    "speech": "speech",
    "music": "music",
    "singing": "singing",
    "noise": "noise",
    "other": "noise",
}
MAX_RECORDING_S = 45.0  # long tracks contribute a random excerpt, so no single source dominates
BOUNDARY_GUARD_S = 0.1  # frames this close to a label change are ambiguous: not trained on


# ---------------------------------------------------------------- loading


def load_recording(
    path: str, start: float | None, end: float | None, rng: np.random.Generator
) -> np.ndarray:
    with sf.SoundFile(path) as f:
        rate = f.samplerate
        first = int(start * rate) if start is not None else 0
        last = int(end * rate) if end is not None else f.frames
        length = last - first
        if start is None and length > MAX_RECORDING_S * rate:
            first = int(rng.integers(0, length - int(MAX_RECORDING_S * rate)))
            length = int(MAX_RECORDING_S * rate)
        f.seek(first)
        y = f.read(length, dtype="float32", always_2d=True).mean(axis=1)
    y = soxr.resample(y, rate, SR).astype(np.float32) if rate != SR else y
    return trim(y)


def trim(y: np.ndarray, top_db: float = 35.0, frame: int = 512) -> np.ndarray:
    """Cut leading/trailing stretches more than `top_db` below the loudest frame."""
    n = len(y) // frame
    if n == 0:
        return y
    energy = 10 * np.log10(np.mean(y[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    keep = np.flatnonzero(energy > energy.max() - top_db)
    return y[keep[0] * frame : (keep[-1] + 1) * frame]


def load_pools(manifest: str, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """`pools[label][group]` → list of 16 kHz recordings; also the manifest rows used."""
    pools: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        label = LABEL_OF[row["label"].strip().lower()]
        start = float(row["start"]) if row.get("start") else None
        end = float(row["end"]) if row.get("end") else None
        try:
            y = load_recording(row["path"], start, end, rng)
        except (RuntimeError, OSError, ValueError) as exc:  # a broken file should not stop training
            print(f"skip {row['path']}: {exc}", file=sys.stderr)
            continue
        if len(y) >= SR // 4:
            pools[label][row.get("group") or Path(row["path"]).parent.name].append(y)
    return pools, rows


# ---------------------------------------------------------------- synthetic noise


def coloured_noise(rng, n: int, steepest: float = 2.0) -> np.ndarray:
    """White to brown noise (spectral slope 0 to -3 * `steepest` dB/octave)."""
    alpha = rng.uniform(0.0, steepest)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    return np.fft.irfft(spectrum / freqs ** (alpha / 2), n).astype(np.float32)


def slow_envelope(rng, n: int) -> np.ndarray:
    """Random loudness changes over seconds (traffic passing, wind gusts)."""
    points = max(2, int(n / SR * rng.uniform(0.3, 2.0)) + 2)
    knots = np.exp(rng.normal(0, 0.6, points))
    return np.interp(np.linspace(0, points - 1, n), np.arange(points), knots).astype(np.float32)


def rumble(rng, n: int) -> np.ndarray:
    """Low-frequency noise with loud swells: thunder, engines, wind on a microphone."""
    y = coloured_noise(rng, n, steepest=4.0)
    b, a = scipy.signal.butter(2, rng.uniform(120, 2000) / (SR / 2))
    y = scipy.signal.lfilter(b, a, y).astype(np.float32)
    return y * slow_envelope(rng, n) ** rng.uniform(1.0, 3.0)


def bursts(rng, n: int) -> np.ndarray:
    """Dense short decaying noise bursts: applause, rain, crackle."""
    out = np.zeros(n, dtype=np.float32)
    rate = rng.uniform(5, 150)
    length = int(SR * rng.uniform(0.003, 0.04))
    shape = np.exp(-np.arange(length) / (length / 4)).astype(np.float32)
    for start in rng.integers(0, max(1, n - length), int(rate * n / SR)):
        out[start : start + length] += (
            shape * rng.standard_normal(length).astype(np.float32) * rng.uniform(0.2, 1)
        )
    b, a = scipy.signal.butter(
        2, rng.uniform(1500, 7000) / (SR / 2), "high" if rng.random() < 0.5 else "low"
    )
    return scipy.signal.lfilter(b, a, out).astype(np.float32)


def hum(rng, n: int) -> np.ndarray:
    """Mains hum with harmonics under hiss: machine room tone."""
    t = np.arange(n) / SR
    base = rng.choice([50.0, 60.0, 100.0, 120.0])
    y = sum(
        rng.uniform(0.1, 1) * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6))
        for k in range(1, 6)
    )
    return (y + rng.uniform(0.2, 1.0) * coloured_noise(rng, n)).astype(np.float32)


def calls(rng, n: int) -> np.ndarray:
    """Irregular short calls: bird chirps (fast high sweeps) or barks/croaks (rough harmonic bursts)."""
    out = np.zeros(n, dtype=np.float32)
    birds = rng.random() < 0.5
    t = 0
    while True:
        t += int(SR * rng.exponential(0.25 if birds else 0.6))
        length = int(SR * (rng.uniform(0.02, 0.15) if birds else rng.uniform(0.08, 0.35)))
        if t + length >= n:
            break
        time = np.arange(length) / SR
        if birds:
            f0, f1 = rng.uniform(2000, 7000, 2)
            phase = (
                2
                * np.pi
                * np.cumsum(
                    np.linspace(f0, f1, length)
                    + 300 * np.sin(2 * np.pi * rng.uniform(20, 80) * time)
                )
                / SR
            )
            call = np.sin(phase)
        else:
            f0 = rng.uniform(150, 700) * np.exp(-time * rng.uniform(0, 4))
            phase = 2 * np.pi * np.cumsum(f0) / SR
            call = sum(np.sin(k * phase) / k for k in range(1, 8)) + rng.uniform(
                0.2, 1.0
            ) * rng.standard_normal(length)
        out[t : t + length] += (call * np.hanning(length) * rng.uniform(0.3, 1.0)).astype(
            np.float32
        )
        t += length
    return out + 0.02 * coloured_noise(rng, n)


def synthetic_noise(rng, n: int) -> np.ndarray:
    kind = rng.choice(
        ["coloured", "rumble", "bursts", "hum", "calls"], p=[0.3, 0.15, 0.22, 0.08, 0.25]
    )
    y = {
        "coloured": coloured_noise,
        "rumble": rumble,
        "bursts": bursts,
        "hum": hum,
        "calls": calls,
    }[kind](rng, n)
    if rng.random() < 0.6:
        y = y * slow_envelope(rng, n)
    return y


# ---------------------------------------------------------------- augmentation


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-9)


def reverberate(rng, y: np.ndarray) -> np.ndarray:
    """Far-field sound: convolve with exponentially decaying noise (RT60 0.2–1.0 s)."""
    rt60 = rng.uniform(0.2, 1.0)
    length = int(SR * rt60)
    ir = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)
    ir[0] = rng.uniform(0.5, 3.0) * np.abs(ir).max()  # direct path
    wet = scipy.signal.fftconvolve(y, ir)[: len(y)]
    return (wet / (rms(wet) / rms(y))).astype(np.float32)


def band_limit(rng, y: np.ndarray) -> np.ndarray:
    """Telephone/low-rate sources: through 8 kHz (or 11.025 kHz) sampling, or a low-pass."""
    if rng.random() < 0.6:
        rate = int(rng.choice([8000, 11025]))
        return soxr.resample(soxr.resample(y, SR, rate), rate, SR)[: len(y)].astype(np.float32)
    b, a = scipy.signal.butter(4, rng.uniform(2500, 6500) / (SR / 2))
    return scipy.signal.lfilter(b, a, y).astype(np.float32)


def tilt(rng, y: np.ndarray) -> np.ndarray:
    """A gentle spectral tilt (cheap microphones, EQ): mix in a first-order high- or low-pass."""
    b, a = scipy.signal.butter(
        1, rng.uniform(300, 3000) / (SR / 2), "high" if rng.random() < 0.5 else "low"
    )
    amount = rng.uniform(0.3, 0.9)
    return ((1 - amount) * y + amount * scipy.signal.lfilter(b, a, y)).astype(np.float32)


def codec_round_trip(rng, y: np.ndarray) -> np.ndarray:
    """Encode to MP3 or Ogg Vorbis and decode back (lossy artefacts)."""
    fmt, subtype = ("MP3", "MPEG_LAYER_III") if rng.random() < 0.5 else ("OGG", "VORBIS")
    buffer = io.BytesIO()
    peak = np.abs(y).max() + 1e-9
    with sf.SoundFile(buffer, "w", SR, 1, format=fmt, subtype=subtype) as f:
        for start in range(0, len(y), SR * 10):  # libsndfile's Vorbis writer dislikes huge writes
            f.write(y[start : start + SR * 10] / max(1.0, peak))
    buffer.seek(0)
    out, _ = sf.read(buffer, dtype="float32")
    out = out[: len(y)] * max(1.0, peak)
    return np.pad(out, (0, len(y) - len(out))).astype(np.float32)


def resample_path(rng, y: np.ndarray) -> np.ndarray:
    """The programme as stored at another rate, then resampled to 16 kHz as audiokit does."""
    rate = int(rng.choice([22050, 44100, 48000]))
    return soxr.resample(soxr.resample(y, SR, rate), rate, SR)[: len(y)].astype(np.float32)


# ---------------------------------------------------------------- programmes


def pick_group(rng, pool: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    """A group with probability ∝ sqrt(its seconds): big sources do not drown small ones."""
    names = sorted(pool)
    weights = np.array([math.sqrt(sum(len(y) for y in pool[g])) for g in names])
    return pool[names[rng.choice(len(names), p=weights / weights.sum())]]


def piece(rng, pool: dict[str, list[np.ndarray]], seconds: float, pauses: bool) -> np.ndarray:
    """About `seconds` from one group; short recordings are chained (with pauses for speech)."""
    n = int(seconds * SR)
    recordings = pick_group(rng, pool)
    out, total = [], 0
    while total < n and len(out) < 80:
        y = recordings[rng.integers(len(recordings))]
        if len(y) > n - total:
            start = rng.integers(0, len(y) - (n - total) + 1)
            y = y[start : start + n - total]
        out.append(y)
        total += len(y)
        if pauses and total < n and rng.random() < 0.5:
            gap = int(SR * rng.uniform(0.05, 0.6))
            out.append(np.zeros(gap, dtype=np.float32))
            total += gap
    return np.concatenate(out)[:n] if out else np.zeros(n, dtype=np.float32)


def noise_piece(rng, pools, n: int) -> np.ndarray:
    if pools["noise"] and rng.random() < AUGMENT["real_noise"]:
        y = piece(rng, pools["noise"], n / SR, pauses=True)
        return np.resize(y, n) if len(y) < n else y
    return synthetic_noise(rng, n)


def pitch_shift(rng, y: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch (and tempo) by resampling: varies the few singing voices we have."""
    ratio = 2 ** (semitones / 12)
    return soxr.resample(y, int(SR * ratio), SR).astype(np.float32)


def singing_piece(rng, pools, n: int) -> np.ndarray:
    """Singing, pitch-shifted, often over an instrumental bed (labelled music)."""
    voice = piece(rng, pools["singing"], n / SR, pauses=False)
    voice = np.resize(pitch_shift(rng, voice, rng.uniform(-4, 4)), n)
    if rng.random() < 0.6:
        bed = np.resize(piece(rng, pools["music"], n / SR, pauses=False), n)
        voice = voice + bed * (rms(voice) / rms(bed)) * 10 ** (rng.uniform(-12, 3) / 20)
    return voice


# Vowel formants (F1, F2, F3 in Hz, roughly a low adult voice): sung vowels are held.
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
          (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240), (490, 1350, 1690)]
SCALES = [(0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9), (0, 3, 5, 7, 10)]


def resonate(y: np.ndarray, freq: float, bandwidth: float, state=None):
    """Two-pole resonator (a formant or an instrument body mode), unit gain at its peak."""
    r = math.exp(-math.pi * bandwidth / SR)
    a = [1.0, -2 * r * math.cos(2 * math.pi * freq / SR), r * r]
    b = [1 - r]
    if state is None:
        state = np.zeros(2)
    out, state = scipy.signal.lfilter(b, a, y, zi=state)
    return out, state


def melody(rng, n: int, low: float, high: float, notes: tuple[float, float], vibrato: float):
    """A per-sample f0 track: notes of a scale, glides between them, delayed vibrato, drift;
    also the note boundaries (sample indices) and a note-level loudness envelope."""
    scale = SCALES[rng.integers(len(SCALES))]
    tonic = math.exp(rng.uniform(math.log(low), math.log(high)))
    degree = int(rng.integers(0, len(scale)))
    f0 = np.empty(n)
    envelope = np.zeros(n)
    bounds = []
    t = 0
    while t < n:
        length = min(n - t, int(SR * rng.uniform(*notes)))
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -4, 9))
        octave, step = divmod(degree, len(scale))
        f0[t : t + length] = tonic * 2 ** (octave + scale[step] / 12)
        attack = min(length // 2, int(SR * rng.uniform(0.01, 0.08)))
        release = min(length // 2, int(SR * rng.uniform(0.03, 0.15)))
        env = np.ones(length)
        env[:attack] = np.linspace(0, 1, attack)
        env[length - release :] = np.linspace(1, 0, release)
        if rng.random() < 0.15:  # a breath between phrases
            env[int(length * rng.uniform(0.5, 0.9)) :] = 0
        envelope[t : t + length] = env * rng.uniform(0.6, 1.0)
        bounds.append((t, t + length))
        t += length
    # glides (portamento): smooth log f0 with a one-pole filter of 20-100 ms
    pole = math.exp(-1 / (SR * rng.uniform(0.02, 0.1)))
    log_f0 = scipy.signal.lfilter([1 - pole], [1, -pole], np.log(f0), zi=[pole * math.log(f0[0])])[0]
    time = np.arange(n) / SR
    depth = vibrato * rng.uniform(0.3, 1.0) / 12 * math.log(2)  # semitones → natural log units
    rate = rng.uniform(4.5, 7.0)
    vib = np.sin(2 * np.pi * rate * time + rng.uniform(0, 6))
    onset = np.zeros(n)  # vibrato grows in over each note
    for start, end in bounds:
        onset[start:end] = np.clip((np.arange(end - start) / SR - 0.15) / 0.3, 0, 1)
    knots = int(n / SR / 0.25) + 2
    drift = np.interp(time, np.arange(knots) * 0.25, rng.normal(0, 0.004, knots))
    return np.exp(log_f0 + depth * vib * onset + drift), envelope, bounds


def harmonic_source(rng, f0: np.ndarray, slope: float, odd_only: bool = False) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0) / SR
    out = np.zeros(len(f0))
    top = int(7600 / f0.min())
    for k in range(1, min(top, 60) + 1):
        if odd_only and k % 2 == 0 and k > 1:
            weight = 0.15
        else:
            weight = 1.0
        amplitude = weight * k ** (-slope) * (k * f0 < 7600)
        out += amplitude * np.sin(k * phase + rng.uniform(0, 6))
    return out


def sung_line(rng, n: int) -> np.ndarray:
    """One synthetic sung voice: held vowels on a melody with vibrato, consonant onsets."""
    low, high = (90, 260) if rng.random() < 0.5 else (180, 520)
    f0, envelope, bounds = melody(rng, n, low, high, (0.25, 1.4), vibrato=rng.uniform(0.4, 2.0))
    source = harmonic_source(rng, f0, slope=rng.uniform(0.8, 1.6))
    source += rng.uniform(0.01, 0.08) * rng.standard_normal(n) * (source.std() + 1e-9)  # breath
    out = np.zeros(n)
    states = [None, None, None]
    shift = rng.uniform(0.9, 1.25)  # vocal tract length
    for start, end in bounds:
        formants = VOWELS[rng.integers(len(VOWELS))]
        segment = np.zeros(end - start)
        for i, (freq, gain) in enumerate(zip(formants, (1.0, 0.6, 0.35))):
            part, states[i] = resonate(source[start:end], freq * shift, rng.uniform(60, 150), states[i])
            segment += gain * part
        if rng.random() < 0.4:  # a consonant: a short noise burst at the note onset
            burst = int(SR * rng.uniform(0.02, 0.07))
            segment[:burst] += (
                rng.standard_normal(min(burst, len(segment))) * segment.std() * rng.uniform(0.2, 0.8)
            )
        out[start:end] = segment
    return out * envelope


def instrument_line(rng, n: int) -> np.ndarray:
    """One synthetic solo instrument line (wind/bowed-string-like): body resonances, little
    or no vibrato, breath or bow noise, sometimes odd harmonics only (clarinet-like)."""
    f0, envelope, _ = melody(
        rng, n, *([(110, 330), (220, 880)][rng.integers(2)]), (0.12, 1.0),
        vibrato=rng.uniform(0, 0.6) if rng.random() < 0.6 else 0.0,
    )
    source = harmonic_source(rng, f0, slope=rng.uniform(0.7, 2.2), odd_only=rng.random() < 0.3)
    out = 0.3 * source
    for _ in range(int(rng.integers(1, 4))):
        part, _ = resonate(source, rng.uniform(300, 3500), rng.uniform(100, 600))
        out += rng.uniform(0.3, 1.0) * part
    out += rng.uniform(0.005, 0.05) * rng.standard_normal(n) * (out.std() + 1e-9)
    return out * envelope


def synthetic_music(rng, n: int) -> np.ndarray:
    """Voices without accompaniment (a cappella, choirs) or small acoustic ensembles: the
    music that looks most like speech to a frame classifier. Labelled music."""
    sung = rng.random() < 0.6
    voices = int(rng.choice([1, 1, 2, 3, 4]))
    out = np.zeros(n)
    for _ in range(voices):
        line = sung_line(rng, n) if sung else instrument_line(rng, n)
        out += line / (rms(line) + 1e-9) * rng.uniform(0.5, 1.0)
    out = out.astype(np.float32)
    if rng.random() < 0.6:
        out = reverberate(rng, out)
    return out


def fade(y: np.ndarray, ms: float = 20) -> np.ndarray:
    n = min(len(y) // 2, int(SR * ms / 1000))
    if n > 0:
        ramp = np.linspace(0, 1, n, dtype=np.float32)
        y = y.copy()
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


# share of speech pieces that are sped up or slowed down (--speech-perturb); 0 = off (v1, v2)
SPEECH_PERTURB = [0.0]


def speaker_perturb(rng, y: np.ndarray) -> np.ndarray:
    """Speed perturbation (0.85-1.15 by resampling: tempo, pitch and formants move together),
    so the few dozen training speakers stand in for more voices, rates and pitch ranges."""
    # (no random draw when off: the default programmes stay those of segmenter-v1)
    if SPEECH_PERTURB[0] <= 0 or rng.random() >= SPEECH_PERTURB[0]:
        return y
    return pitch_shift(rng, y, rng.uniform(-2.8, 2.4))


# share of music pieces that are synthetic voices/solo lines (--synthetic-music); v1 0, v2 0.15
SYNTH_MUSIC = [0.0]
KINDS = ["speech", "music", "speech_over_music", "noise", "silence"]
KIND_WEIGHTS = [0.30, 0.28, 0.20, 0.12, 0.10]
# Augmentations added for v3 (command-line flags); the defaults are v2's programmes, and an
# augmentation that is off draws no random numbers, so v2's command builds what it built.
AUGMENT = {
    "bed_snr": (5.0, 20.0),  # dB the music bed sits under the speech (--bed-snr)
    "telephone": 0.0,  # share of speech pieces through a telephone channel (--telephone)
    "noise_under": 0.0,  # share of speech pieces with a loud noise under them (--noise-under)
    "music_shift": 0.0,  # share of music pieces pitch/tempo shifted (--music-shift)
    "real_noise": 0.5,  # share of noise drawn from recordings rather than synthesised (--real-noise)
    "singing": 0.2,  # share of (non-synthetic) music pieces taken from the singing pool (--singing)
}


def telephone(rng, y: np.ndarray) -> np.ndarray:
    """A telephone channel: 300–3400 Hz band, 8 kHz sampling, sometimes µ-law at 8 bits."""
    b, a = scipy.signal.butter(4, [rng.uniform(250, 400), rng.uniform(3000, 3500)], "band", fs=SR)
    y = scipy.signal.lfilter(b, a, y).astype(np.float32)
    y = soxr.resample(soxr.resample(y, SR, 8000), 8000, SR)[: len(y)].astype(np.float32)
    if rng.random() < 0.5:
        peak = np.abs(y).max() + 1e-9
        mu = np.sign(y) * np.log1p(255 * np.abs(y / peak)) / np.log1p(255)
        mu = np.round(mu * 127) / 127
        y = (np.sign(mu) * np.expm1(np.abs(mu) * np.log1p(255)) / 255 * peak).astype(np.float32)
    return y
SPANS = {
    "speech": (3, 15),
    "music": (3, 20),
    "speech_over_music": (3, 12),
    "noise": (1.5, 8),
    "silence": (0.5, 3),
}


def programme(rng, pools, seconds: float) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A sequence of labelled pieces, augmented, with its reference labels."""
    parts, labels, t, prev = [], [], 0.0, None
    room = rng.uniform(-75, -45)  # dB under full scale: the background under speech pauses
    while t < seconds:
        kind = KINDS[rng.choice(len(KINDS), p=KIND_WEIGHTS)]
        if kind == prev:
            continue
        prev = kind
        n = int(rng.uniform(*SPANS[kind]) * SR)
        if kind == "speech":
            y = speaker_perturb(rng, piece(rng, pools["speech"], n / SR, pauses=True))
            if AUGMENT["noise_under"] > 0 and rng.random() < AUGMENT["noise_under"]:
                under = noise_piece(rng, pools, len(y))
                y = y + under * (rms(y) / rms(under)) * 10 ** (-rng.uniform(3, 20) / 20)
        elif kind == "music" and SYNTH_MUSIC[0] > 0 and rng.random() < SYNTH_MUSIC[0]:
            y = synthetic_music(rng, n)
        elif kind == "music" and pools["singing"] and rng.random() < AUGMENT["singing"]:
            y = singing_piece(rng, pools, n)
        elif kind == "music":
            y = piece(rng, pools["music"], n / SR, pauses=False)
            if AUGMENT["music_shift"] > 0 and rng.random() < AUGMENT["music_shift"]:
                y = pitch_shift(rng, y, rng.uniform(-3, 3))
        elif kind == "speech_over_music":
            y = speaker_perturb(rng, piece(rng, pools["speech"], n / SR, pauses=True))
            bed = piece(rng, pools["music"], len(y) / SR, pauses=False)
            bed = np.resize(bed, len(y))
            y = y + bed * (rms(y) / rms(bed)) * 10 ** (-rng.uniform(*AUGMENT["bed_snr"]) / 20)
        elif kind == "noise":
            y = noise_piece(rng, pools, n)
        else:
            y = np.zeros(n, dtype=np.float32)
        y = y.astype(np.float32)
        if kind != "silence":
            if kind in ("speech", "speech_over_music") and rng.random() < 0.3:
                y = reverberate(rng, y)
            if rng.random() < 0.3:
                y = tilt(rng, y)
            if rng.random() < 0.2:
                y = band_limit(rng, y)
            if (
                AUGMENT["telephone"] > 0
                and kind in ("speech", "speech_over_music")
                and rng.random() < AUGMENT["telephone"]
            ):
                y = telephone(rng, y)
            if kind != "noise" and rng.random() < 0.3:
                background = noise_piece(rng, pools, len(y))
                y = y + background * (rms(y) / rms(background)) * 10 ** (-rng.uniform(8, 30) / 20)
            y = y / (np.abs(y).max() + 1e-9) * 10 ** (-rng.uniform(0, 24) / 20)
            if kind in ("speech", "speech_over_music"):
                # pauses inside speech keep a faint room tone, as real recordings do
                y = y + coloured_noise(rng, len(y)) * 10 ** (room / 20)
        else:
            level = rng.uniform(-100, -65) if rng.random() < 0.7 else -np.inf
            if np.isfinite(level):
                y = coloured_noise(rng, n)
                y = y * (10 ** (level / 20) / rms(y))
        y = fade(y)
        parts.append(y)
        labels.append((t, t + len(y) / SR, "speech" if kind == "speech_over_music" else kind))
        t += len(y) / SR
    mix = np.concatenate(parts).astype(np.float32)
    roll = rng.random()
    if roll < 0.3:
        mix = codec_round_trip(rng, mix)
    elif roll < 0.6:
        mix = resample_path(rng, mix)
    return mix, labels


def frame_targets(labels, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Class index per frame (silence trains as noise) and a mask off near label changes."""
    centres = np.arange(frames) * DECISION_SECONDS
    target = np.full(frames, -1, dtype=np.int64)
    keep = np.ones(frames, dtype=bool)
    index = {"speech": 0, "music": 1, "noise": 2, "silence": 2}
    for start, end, label in labels:
        target[(centres >= start) & (centres < end)] = index[label]
        keep &= np.abs(centres - start) > BOUNDARY_GUARD_S
    return target, keep & (target >= 0)


def programmes_of(rng, pools, count: int, every: int, frames: bool = False):
    """`count` programmes: each one's `Decisions` (as inference computes them; with the
    ConvNets' frames if `frames`), targets, the mask of decisions to train on (one in `every`,
    none near a label change) and seconds."""
    for i in range(count):
        mix, labels = programme(rng, pools, rng.uniform(60, 120))
        decisions = decisions_of(mix, frames)
        target, keep = frame_targets(labels, len(decisions.features))
        keep[np.arange(len(keep)) % every != rng.integers(every)] = False
        yield decisions, target, keep, len(mix) / SR
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{count} programmes", file=sys.stderr)


def build_set(rng, pools, programmes: int, every: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The MLPs' training set: the kept decisions' window statistics and targets."""
    xs, ys, seconds = [], [], 0.0
    for decisions, target, keep, length in programmes_of(rng, pools, programmes, every):
        xs.append(decisions.features[keep])
        ys.append(target[keep])
        seconds += length
    return np.concatenate(xs), np.concatenate(ys), seconds


def build_sequences(rng, pools, programmes: int, every: int) -> tuple[list, float]:
    """The ConvNets' training set: per programme its frames and targets (-1: not trained on).
    The same draws as `build_set`, so the same programmes."""
    out, seconds = [], 0.0
    for decisions, target, keep, length in programmes_of(rng, pools, programmes, every, True):
        out.append((decisions.frames, np.where(keep, target, -1)))
        seconds += length
    return out, seconds


# ---------------------------------------------------------------- training


def train(x, y, x_val, y_val, *, hidden, epochs, seed) -> tuple[dict, dict]:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mean = x.mean(axis=0)
    scale = 1.0 / (x.std(axis=0) + 1e-3)
    xt = torch.from_numpy((x - mean) * scale).float()
    yt = torch.from_numpy(y)
    xv = torch.from_numpy((x_val - mean) * scale).float()
    sizes = [N_FEATURES, *hidden, len(CLASSES)]
    layers: list = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(0.1)]
    model = torch.nn.Sequential(*layers)
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    class_weight = torch.tensor(
        counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight, label_smoothing=0.05)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=3e-3, total_steps=epochs * math.ceil(len(xt) / 512)
    )
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), 512):
            idx = order[start : start + 512]
            # feature noise: robustness to small shifts the augmentation did not cover
            batch = xt[idx] + 0.05 * torch.randn(len(idx), N_FEATURES, generator=generator)
            loss = loss_fn(model(batch), yt[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            predicted = model(xv).argmax(dim=1).numpy()
        accuracy = float(np.mean(predicted == y_val))
        history.append({"epoch": epoch + 1, "loss": total / len(xt), "val_accuracy": accuracy})
        print(
            f"epoch {epoch + 1:2d} loss {total / len(xt):.4f} val_acc {accuracy:.4f}",
            file=sys.stderr,
        )
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    weights = {
        "n_layers": np.array(len(linear)),
        "feature_mean": mean.astype(np.float32),
        "feature_scale": scale.astype(np.float32),
    }
    for i, layer in enumerate(linear):
        weights[f"w{i}"] = layer.weight.detach().numpy().T.astype(np.float32)
        weights[f"b{i}"] = layer.bias.detach().numpy().astype(np.float32)
    return weights, {"history": history, "probabilities": probabilities_of(model, xv)}


# The ConvNet: per layer (taps, dilation, stride, residual). Two layers over frames, one that
# halves the rate to the decisions', three residual layers of growing dilation, one to classes:
# ±63 frames (`CONV_HALF`) around each decision.
CONV_PLAN = ((5, 1, 1, False), (5, 2, 1, False), (3, 1, 2, False),
             (5, 2, 1, True), (5, 4, 1, True), (5, 8, 1, True), (1, 1, 1, False))
CONV_CROP = 256  # decisions per training crop (10 s)


def conv_network(channels: int, inputs: int):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [inputs] + [channels] * (len(CONV_PLAN) - 1) + [len(CLASSES)]
            self.layers = torch.nn.ModuleList(
                torch.nn.Conv1d(sizes[i], sizes[i + 1], taps, stride=stride, dilation=dilation)
                for i, (taps, dilation, stride, _) in enumerate(CONV_PLAN)
            )
            self.drop = torch.nn.Dropout(0.1)

        def forward(self, x):  # (batch, inputs, 2L - 1 + 2 * CONV_HALF) -> (batch, 3, L)
            for i, (layer, (taps, dilation, _, residual)) in enumerate(zip(self.layers, CONV_PLAN)):
                if residual:
                    crop = (taps - 1) * dilation // 2
                    x = x[..., crop:-crop] + self.drop(torch.relu(layer(x)))
                else:
                    x = layer(x)
                    if i < len(CONV_PLAN) - 1:
                        x = torch.relu(x)
            return x

    return Net()


def train_conv(sequences, *, channels, epochs, seed) -> tuple[dict, dict]:
    """A ConvNet on random 10 s crops of the programmes (class-weighted, label smoothing,
    input noise, as `train`); its weights in `ConvNet`'s layout."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    inputs = [conv_inputs(frames) for frames, _ in sequences]
    valid = np.concatenate([x[~np.isnan(x[:, 0])] for x in inputs])
    mean, scale = valid.mean(axis=0), 1.0 / (valid.std(axis=0) + 1e-3)
    series = [
        (torch.from_numpy(np.nan_to_num((x - mean) * scale).T.copy()), torch.from_numpy(t))
        for x, (_, t) in zip(inputs, sequences)
    ]
    targets = np.concatenate([t for _, t in sequences])
    counts = np.bincount(targets[targets >= 0], minlength=len(CLASSES)).astype(np.float64)
    class_weight = torch.tensor(counts.sum() / (len(CLASSES) * np.maximum(counts, 1)),
                                dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight, label_smoothing=0.05, ignore_index=-1)
    model = conv_network(channels, valid.shape[1])
    lengths = np.array([len(t) for _, t in series], dtype=np.float64)
    batch = 16
    steps = math.ceil(2 * lengths.sum() / CONV_CROP / batch)  # each decision about twice an epoch
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=epochs * steps)
    width = 2 * CONV_CROP - 1 + 2 * CONV_HALF
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for _ in range(steps):
            xs, ys = [], []
            for j in rng.choice(len(series), batch, p=lengths / lengths.sum()):
                x, t = series[j]
                start = int(rng.integers(0, len(t) - CONV_CROP + 1))
                xs.append(x[:, 2 * start : 2 * start + width])
                ys.append(t[start : start + CONV_CROP])
            xb = torch.stack(xs)
            xb = xb + 0.05 * torch.randn_like(xb)  # as `train`'s feature noise
            loss = loss_fn(model(xb), torch.stack(ys))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        history.append({"epoch": epoch + 1, "loss": total / steps})
        print(f"epoch {epoch + 1:2d} loss {total / steps:.4f}", file=sys.stderr)
    weights = {
        "n_layers": np.array(len(CONV_PLAN)),
        "feature_mean": mean.astype(np.float32),
        "feature_scale": scale.astype(np.float32),
    }
    for i, (layer, (_, dilation, stride, residual)) in enumerate(zip(model.layers, CONV_PLAN)):
        weights[f"w{i}"] = layer.weight.detach().numpy().astype(np.float32)
        weights[f"b{i}"] = layer.bias.detach().numpy().astype(np.float32)
        weights[f"layout{i}"] = np.array([dilation, stride, int(residual)])
    return weights, {"history": history}


def probabilities_of(model, x) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(model(x), dim=1).numpy()


def parse_class_offsets(text: str) -> tuple[float, ...]:
    """`SPEECH,MUSIC,OTHER` → the three log-probability offsets; ValueError otherwise."""
    offsets = tuple(float(v) for v in text.split(","))
    if len(offsets) != len(CLASSES):
        raise ValueError(f"class offsets need {len(CLASSES)} numbers, got {text!r}")
    return offsets


def merge(
    paths: list[str],
    out: str,
    version: str,
    conv_share: float | None = None,
    class_offsets: tuple[float, ...] | None = None,
    float16: bool = False,
) -> None:
    """One weights file whose members are all the members of `paths`, in order (and, with
    MLPs and ConvNets, the ConvNets' share of the average; the class offsets of the average's
    log-probabilities). `float16` stores the weight matrices in half precision: half the file,
    and inference, which reads them into float32, changes in the fourth decimal."""

    def stored(name: str, value: np.ndarray) -> np.ndarray:
        is_matrix = name[0] == "w" and name[1:].isdigit()
        return value.astype(np.float16) if float16 and is_matrix else value

    weights = {"version": np.array(version)}
    if conv_share is not None:
        weights["conv_share"] = np.array(conv_share)
    if class_offsets is not None:
        weights["class_offsets"] = np.array(class_offsets, dtype=np.float64)
    count = 0
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            if "n_members" not in data.files:  # one bare network (early v1 runs)
                for key in data.files:
                    if key != "version":
                        weights[f"m{count}_{key}"] = stored(key, data[key])
                count += 1
                continue
            for member in range(int(data["n_members"])):
                prefix = f"m{member}_"
                for key in data.files:
                    if key.startswith(prefix):
                        name = key[len(prefix) :]
                        weights[f"m{count}_{name}"] = stored(name, data[key])
                count += 1
    weights["n_members"] = np.array(count)
    np.savez_compressed(out, **weights)
    print(f"{out}: {count} networks from {len(paths)} files", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", nargs="?", help="CSV: path,label[,start,end][,group][,license]")
    ap.add_argument("--out", default=str(REPO / "audiokit" / "models" / "segmenter-v2.npz"))
    ap.add_argument("--programmes", type=int, default=150)
    ap.add_argument("--val-programmes", type=int, default=10)
    ap.add_argument(
        "--every",
        type=int,
        default=1,
        help="train on one decision in EVERY (neighbours are near-copies)",
    )
    ap.add_argument("--hidden", default="96,48")
    ap.add_argument(
        "--conv",
        type=int,
        default=0,
        metavar="CHANNELS",
        help="train ConvNets of this width over the frames instead of MLPs",
    )
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--members", type=int, default=3, help="networks averaged at inference")
    ap.add_argument(
        "--fresh-data",
        action="store_true",
        help="build new programmes for each member after the first",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="NPZ",
        help="only merge trained weights files into one ensemble (--out)",
    )
    ap.add_argument(
        "--conv-share",
        type=float,
        default=None,
        help="with --merge: the ConvNets' share of the average (default 0.5)",
    )
    ap.add_argument(
        "--float16",
        action="store_true",
        help="with --merge: store the weight matrices in half precision (half the file)",
    )
    ap.add_argument(
        "--class-offsets",
        default=None,
        metavar="SPEECH,MUSIC,OTHER",
        help="with --merge: added to the average's log-probabilities (the classes' priors)",
    )
    ap.add_argument(
        "--speech-perturb",
        type=float,
        default=0.0,
        help="share of speech pieces given a random speed change (0.85-1.15)",
    )
    ap.add_argument(
        "--synthetic-music",
        type=float,
        default=0.0,
        help="share of music pieces that are synthetic sung or solo-instrument lines",
    )
    ap.add_argument("--bed-snr", default="5,20", help="LO,HI: dB a music bed sits under speech")
    ap.add_argument("--telephone", type=float, default=0.0, help="share of speech pieces telephoned")
    ap.add_argument(
        "--noise-under", type=float, default=0.0, help="share of speech pieces over loud noise"
    )
    ap.add_argument(
        "--music-shift", type=float, default=0.0, help="share of music pieces pitch/tempo shifted"
    )
    ap.add_argument(
        "--real-noise", type=float, default=0.5, help="share of noise taken from recordings"
    )
    ap.add_argument(
        "--singing", type=float, default=0.2, help="share of music pieces that are real singing"
    )
    ap.add_argument(
        "--kind-weights",
        default=",".join(str(w) for w in KIND_WEIGHTS),
        help="shares of speech, music, speech over music, noise, silence pieces",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", default="segmenter-v2")
    args = ap.parse_args()
    if args.merge:
        try:
            offsets = None if args.class_offsets is None else parse_class_offsets(args.class_offsets)
        except ValueError as exc:
            ap.error(f"--class-offsets: {exc}")
        merge(args.merge, args.out, args.version, args.conv_share, offsets, args.float16)
        return 0
    if not args.manifest:
        ap.error("a manifest is needed (or --merge)")

    SYNTH_MUSIC[0] = args.synthetic_music
    SPEECH_PERTURB[0] = args.speech_perturb
    AUGMENT.update(
        bed_snr=tuple(float(v) for v in args.bed_snr.split(",")),
        telephone=args.telephone,
        noise_under=args.noise_under,
        music_shift=args.music_shift,
        real_noise=args.real_noise,
        singing=args.singing,
    )
    KIND_WEIGHTS[:] = [float(w) for w in args.kind_weights.split(",")]
    began = time.time()
    rng = np.random.default_rng(args.seed)
    pools, rows = load_pools(args.manifest, rng)
    for label in ("speech", "music", "singing", "noise"):
        seconds = sum(len(y) for g in pools[label].values() for y in g) / SR
        print(f"{label}: {len(pools[label])} groups, {seconds / 60:.1f} min", file=sys.stderr)
    if args.conv:
        return train_convnets(args, rng, pools, rows, began)
    x, y, seconds = build_set(rng, pools, args.programmes, args.every)
    x_val, y_val, _ = build_set(
        np.random.default_rng(args.seed + 1), pools, args.val_programmes, args.every
    )
    print(f"{len(x)} training frames from {seconds / 3600:.2f} h of programmes", file=sys.stderr)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    # Several networks from different initialisations and orders, averaged at inference:
    # steadier on unseen material than any one of them.
    weights = {"version": np.array(args.version), "n_members": np.array(args.members)}
    reports, ensemble = [], 0.0
    for member in range(args.members):
        if member and args.fresh_data:
            # this member sees its own programmes: more diversity across the ensemble
            x, y, more = build_set(
                np.random.default_rng(args.seed + 1000 * member), pools, args.programmes, args.every
            )
            seconds += more
        member_weights, report = train(
            x, y, x_val, y_val, hidden=hidden, epochs=args.epochs, seed=args.seed + 100 * member
        )
        weights |= {f"m{member}_{key}": value for key, value in member_weights.items()}
        reports.append(report["history"][-1])
        ensemble = ensemble + report["probabilities"]
    ensemble_accuracy = float(np.mean(np.argmax(ensemble, axis=1) == y_val))
    print(f"ensemble val_acc {ensemble_accuracy:.4f}", file=sys.stderr)
    np.savez_compressed(args.out, **weights)
    print_summary(
        args, rows, seconds, reports, began,
        training_frames=len(x),
        class_frames={c: int(n) for c, n in zip(CLASSES, np.bincount(y, minlength=3))},
        hidden=list(hidden),
        ensemble_val_accuracy=round(ensemble_accuracy, 4),
    )
    return 0


def print_summary(args, rows, seconds: float, reports: list, began: float, **more) -> None:
    """The run's JSON summary on stdout: the command's settings, data, last epochs, size."""
    summary = {
        "version": args.version,
        "seed": args.seed,
        "programmes": args.programmes,
        "programme_hours": round(seconds / 3600, 2),
        "epochs": args.epochs,
        "recordings": len(rows),
        "groups": sorted({r.get("group", "") for r in rows}),
        "members": args.members,
        "final": reports,
        **more,
        "train_minutes": round((time.time() - began) / 60, 1),
        "size_bytes": Path(args.out).stat().st_size,
    }
    print(json.dumps(summary, indent=1))


def train_convnets(args, rng, pools, rows, began) -> int:
    """`--conv`: `--members` ConvNets on the same `--programmes` (with `--fresh-data`, each
    after the first on its own, drawn from `--seed + 1000 * member`), merged into `--out`."""
    weights = {"version": np.array(args.version), "n_members": np.array(args.members)}
    sequences, seconds = build_sequences(rng, pools, args.programmes, args.every)
    reports = []
    for member in range(args.members):
        if member and args.fresh_data:
            sequences, more = build_sequences(
                np.random.default_rng(args.seed + 1000 * member), pools, args.programmes, args.every
            )
            seconds += more
        member_weights, report = train_conv(
            sequences, channels=args.conv, epochs=args.epochs, seed=args.seed + 100 * member
        )
        weights |= {f"m{member}_{key}": value for key, value in member_weights.items()}
        reports.append(report["history"][-1])
    np.savez_compressed(args.out, **weights)
    print_summary(args, rows, seconds, reports, began, conv_channels=args.conv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
