"""Decibels, DCT and liftering for (mel) cepstra."""

from __future__ import annotations

import numpy as np


def power_to_db(
    S: np.ndarray, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = None
) -> np.ndarray:
    """`10·log10(max(amin, S) / ref)`; with `top_db`, floored at `S.max() - top_db` dB.

    The floor uses the maximum of the array given. Streaming callers that need librosa's
    per-file floor call this with `top_db=None` and apply the floor once the file's peak is known.
    """
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(max(amin, ref))
    if top_db is not None:
        if top_db < 0:
            raise ValueError("top_db must be non-negative")
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def dct_matrix(n_out: int, n_in: int, *, norm: str | None = "ortho") -> np.ndarray:
    """DCT-II basis `[shape=(n_out, n_in)]` so that `x @ D.T == scipy.fft.dct(x, type=2)[..., :n_out]`."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    if norm == "ortho":
        basis *= np.sqrt(1.0 / (2 * n_in))
        basis[0] /= np.sqrt(2.0)
    elif norm is not None:
        raise ValueError(f"norm must be 'ortho' or None, got {norm!r}")
    return basis.astype(np.float32)


def lifter_weights(n_mfcc: int, lifter: float) -> np.ndarray:
    """Cepstral liftering weights (librosa's `lifter`): ones when `lifter == 0`."""
    if lifter < 0:
        raise ValueError(f"lifter must be non-negative, got {lifter}")
    if lifter == 0:
        return np.ones(n_mfcc, dtype=np.float32)
    index = np.arange(1, 1 + n_mfcc, dtype=np.float64)
    return (1.0 + (lifter / 2.0) * np.sin(np.pi * index / lifter)).astype(np.float32)
