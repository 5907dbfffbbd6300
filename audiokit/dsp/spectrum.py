"""Windowed short-time spectra of framed signals."""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal


def stft_window(n_fft: int, win_length: int | None = None, window: str = "hann") -> np.ndarray:
    """librosa's analysis window: periodic `window` of `win_length`, zero-padded centred to `n_fft`."""
    win_length = n_fft if win_length is None else win_length
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    w = scipy.signal.get_window(window, win_length, fftbins=True)
    left = (n_fft - win_length) // 2
    padded = np.zeros(n_fft, dtype=np.float64)
    padded[left : left + win_length] = w
    return padded.astype(np.float32)


def magnitude_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """`|rfft(frames * window)|` for `frames [shape=(..., T, n_fft)]` → `(..., T, n_fft//2+1)`, float32."""
    spectrum = scipy.fft.rfft(frames * window, axis=-1)
    return np.abs(spectrum)


def power_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """`|rfft(frames * window)|**2` computed as re² + im², float32."""
    spectrum = scipy.fft.rfft(frames * window, axis=-1)
    return spectrum.real**2 + spectrum.imag**2
