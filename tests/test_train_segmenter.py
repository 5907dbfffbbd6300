"""scripts/train_segmenter.py's programmes: both kinds of network train on the same ones, and
its synthetic sung words look sung (a steady pitch) where their source speech glided."""

from __future__ import annotations

import numpy as np

import scripts.train_segmenter as ts
from audiokit.models.segmenter import (
    _GLIDE_COLUMN,
    _STEADY_COLUMN,
    _VOICED_COLUMN,
    decisions_of,
    window_statistics,
)

SR = ts.SR


def _gliding_speech(rng, seconds: float) -> np.ndarray:
    """Speech-like: a voice whose pitch sweeps ±4 semitones three times a second, in syllables."""
    t = np.arange(int(SR * seconds)) / SR
    f0 = 140.0 * 2 ** (4 / 12 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.sin(2 * np.pi * 4 * t) > -0.3
    return (0.1 * voice * syllables).astype(np.float32)


def _pools(rng) -> dict:
    return {
        "speech": {"g": [_gliding_speech(rng, 4.0) for _ in range(3)]},
        "music": {"m": [np.sin(2 * np.pi * 440 * np.arange(SR * 3) / SR).astype(np.float32)]},
        "singing": {},
        "noise": {"n": [rng.standard_normal(SR * 3).astype(np.float32)]},
    }


def test_convnets_and_mlps_train_on_the_same_programmes():
    """`build_sequences` draws what `build_set` draws: the MLPs' training rows are the
    window statistics of the ConvNets' sequences at the decisions they train on."""
    import scripts.train_segmenter as ts
    from audiokit.models.segmenter import window_statistics

    pools = _pools(np.random.default_rng(5))
    x, y, seconds = ts.build_set(np.random.default_rng(6), pools, 2, 3)
    sequences, seconds_too = ts.build_sequences(np.random.default_rng(6), pools, 2, 3)
    assert seconds == seconds_too
    rows, targets = [], []
    for frames, target in sequences:
        base = frames[~np.isnan(frames[:, 0])][None]  # the file's frames, padding dropped
        trained = np.flatnonzero(target >= 0)
        rows.append(window_statistics(base, 0, 2 * trained, base.shape[1])[0])
        targets.append(target[trained])
    np.testing.assert_array_equal(np.concatenate(targets), y)
    np.testing.assert_allclose(np.concatenate(rows), x, rtol=1e-5, atol=1e-5)


def _pitch(y: np.ndarray) -> tuple[float, float]:
    """Of the voiced frames: the share at a steady pitch, and the median pitch glide."""
    frames = decisions_of(y).frames
    frames = frames[~np.isnan(frames[:, 0])]
    voiced = frames[:, _VOICED_COLUMN] > 0
    return float(frames[voiced, _STEADY_COLUMN].mean()), float(np.median(frames[voiced, _GLIDE_COLUMN]))


def test_sung_words_keep_a_steady_pitch_where_the_speech_glided():
    rng = np.random.default_rng(7)
    pools = _pools(rng)
    speech = ts.piece(rng, pools["speech"], 8.0, pauses=False)
    sung = [ts.sung_speech(np.random.default_rng(seed), pools, SR * 8) for seed in range(4)]
    assert all(len(y) == SR * 8 and np.isfinite(y).all() and ts.rms(y) > 0 for y in sung)
    steady, glide = _pitch(speech)
    assert steady < 0.2 and glide > 0.5
    for y in sung:
        steady, glide = _pitch(y)
        assert steady > 0.4 and glide < 0.3
