"""Per-frame spectral statistics, equal to librosa's `spectral_*`, `rms` and `zero_crossing_rate`.

Spectra are `[shape=(..., T, bins)]` magnitudes; framed signals are `[shape=(..., T, L)]`.
"""

from __future__ import annotations

import numpy as np


def _normalize_l1(S: np.ndarray) -> np.ndarray:
    # librosa.util.normalize(norm=1): all-zero frames are left as they are (not divided).
    total = S.sum(axis=-1, keepdims=True)
    return S / np.where(total < np.finfo(S.dtype).tiny, 1.0, total)


def spectral_centroid(S: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    return _normalize_l1(S) @ freqs.astype(S.dtype)


def spectral_bandwidth(
    S: np.ndarray, freqs: np.ndarray, centroid: np.ndarray, *, p: float = 2.0, norm: bool = True
) -> np.ndarray:
    weights = _normalize_l1(S) if norm else S
    deviation = np.abs(freqs.astype(S.dtype) - centroid[..., None])
    return np.sum(weights * deviation**p, axis=-1) ** (1.0 / p)


def spectral_rolloff(S: np.ndarray, freqs: np.ndarray, *, roll_percent: float = 0.85) -> np.ndarray:
    """Lowest bin frequency at which the cumulative magnitude reaches `roll_percent` of the total."""
    cumulative = np.cumsum(S, axis=-1)
    threshold = roll_percent * cumulative[..., -1:]
    first = np.argmax(cumulative >= threshold, axis=-1)
    return freqs[first].astype(S.dtype)


def spectral_flatness(S: np.ndarray, *, power: float = 2.0, amin: float = 1e-10) -> np.ndarray:
    """Geometric over arithmetic mean of `max(amin, S**power)` per frame."""
    S_thresh = np.maximum(amin, S**power)
    gmean = np.exp(np.mean(np.log(S_thresh), axis=-1))
    return gmean / np.mean(S_thresh, axis=-1)


def frame_rms(frames: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=-1))


def frame_zcr(frames: np.ndarray, *, threshold: float = 1e-10) -> np.ndarray:
    """Fraction of sign changes between neighbouring samples of each frame (0 counts as positive)."""
    negative = np.signbit(frames) & (np.abs(frames) > threshold)
    crossings = negative[..., 1:] != negative[..., :-1]
    return crossings.sum(axis=-1, dtype=np.float32) / frames.shape[-1]
