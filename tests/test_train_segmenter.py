"""scripts/train_segmenter.py's programmes: both kinds of network train on the same ones."""

from __future__ import annotations

import numpy as np

import scripts.train_segmenter as ts
from audiokit.models.segmenter import window_statistics

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

