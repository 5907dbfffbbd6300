"""Windowed short-time spectra of framed signals."""

from __future__ import annotations

import numpy as np

# Periodic ("fftbins=True") windows as cosine sums; importing scipy.signal costs over a second
# of start-up, so it is only imported for other window names.
_COSINE_WINDOWS = {
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "blackman": (0.42, 0.5, 0.08),
    "boxcar": (1.0,),
    "rectangular": (1.0,),
    "ones": (1.0,),
}


def _window(name: str, length: int) -> np.ndarray:
    if name in _COSINE_WINDOWS:
        phase = 2.0 * np.pi * np.arange(length) / length
        return sum((-1) ** k * a * np.cos(k * phase) for k, a in enumerate(_COSINE_WINDOWS[name]))
    import scipy.signal

    return scipy.signal.get_window(name, length, fftbins=True)


def check_window(name: str) -> None:
    """a window name scipy.signal.get_window knows"""
    try:
        _window(name, 16)
    except (ValueError, TypeError):
        raise ValueError("unknown window") from None


def stft_window(n_fft: int, win_length: int | None = None, window: str = "hann") -> np.ndarray:
    """librosa's analysis window: periodic `window` of `win_length`, zero-padded centred to `n_fft`."""
    win_length = n_fft if win_length is None else win_length
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    w = _window(window, win_length)
    left = (n_fft - win_length) // 2
    padded = np.zeros(n_fft, dtype=np.float64)
    padded[left : left + win_length] = w
    return padded.astype(np.float32)


# Frames per FFT call: a block of windowed frames and its spectrum stay in a core's L2 cache.
# Over a whole 10 s block at once, windowing, FFT and power spectrum took 2.3× as long.
_CHUNK_FRAMES = 128


def _rfft_chunks(frames: np.ndarray, window: np.ndarray):
    """`(index, rfft(frames[index] * window))` over blocks of up to `_CHUNK_FRAMES` frames."""
    import scipy.fft  # here, not at the top: a re-run with nothing to do never needs it

    count, length = frames.shape[-2:]
    buffer = np.empty((min(count, _CHUNK_FRAMES), length), dtype=np.float32)
    for lead in np.ndindex(*frames.shape[:-2]):
        for start in range(0, count, _CHUNK_FRAMES):
            index = (*lead, slice(start, min(count, start + _CHUNK_FRAMES)))
            windowed = np.multiply(frames[index], window, out=buffer[: index[-1].stop - start])
            yield index, scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)


def _spectrum_out(frames: np.ndarray) -> np.ndarray:
    return np.empty(frames.shape[:-1] + (frames.shape[-1] // 2 + 1,), dtype=np.float32)


def magnitude_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """`|rfft(frames * window)|` for `frames [shape=(..., T, n_fft)]` → `(..., T, n_fft//2+1)`, float32."""
    out = _spectrum_out(frames)
    for index, spectrum in _rfft_chunks(frames, window):
        np.abs(spectrum, out=out[index])
    return out


def power_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """`|rfft(frames * window)|**2` as re² + im², float32 (librosa's `np.abs(S)**2` within an ulp)."""
    out = _spectrum_out(frames)
    for index, spectrum in _rfft_chunks(frames, window):
        parts = spectrum.view(np.float32).reshape(*spectrum.shape, 2)
        power = np.square(parts[..., 0], out=out[index])
        power += np.square(parts[..., 1])
    return out
