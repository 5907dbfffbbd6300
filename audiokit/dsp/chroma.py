"""Chroma from a power spectrogram, with librosa's definitions (`librosa.feature.chroma_stft`,
`librosa.filters.chroma`, `librosa.estimate_tuning`), frames along the second-to-last axis.

Tuning is estimated from the whole signal in two steps so that a stream can do it: `spectral_peaks`
(piptrack's interpolated peaks, frame by frame) and, once every frame's peaks are known,
`tuning_from_peaks` (median magnitude threshold, then a histogram of the pitch residuals).
"""

from __future__ import annotations

import numpy as np

PIPTRACK_FMIN = 150.0  # librosa.piptrack's defaults, as estimate_tuning uses them
PIPTRACK_FMAX = 4000.0
PIPTRACK_THRESHOLD = 0.1
TUNING_RESOLUTION = 0.01


def hz_to_octs(frequencies: np.ndarray, *, tuning: float = 0.0, bins_per_octave: int = 12) -> np.ndarray:
    """Octaves above C0 (A4 = 440 Hz shifted by `tuning` fractions of a bin)."""
    a440 = 440.0 * 2.0 ** (tuning / bins_per_octave)
    return np.log2(np.asarray(frequencies, dtype=np.float64) / (a440 / 16.0))


def _normalize_columns(weights: np.ndarray, norm: float) -> np.ndarray:
    """Divide each column of `(rows, cols)` by its `norm` (`inf`, or p > 0); tiny columns stay."""
    mag = np.abs(weights).astype(np.float64)
    length = mag.max(axis=0, keepdims=True) if norm == np.inf else np.sum(mag**norm, axis=0, keepdims=True) ** (1.0 / norm)
    length[length < np.finfo(weights.dtype).tiny] = 1.0
    return weights / length


def chroma_filterbank(
    *,
    sr: int,
    n_fft: int,
    n_chroma: int = 12,
    tuning: float = 0.0,
    ctroct: float = 5.0,
    octwidth: float | None = 2.0,
    base_c: bool = True,
) -> np.ndarray:
    """`(n_chroma, n_fft//2 + 1)` float32: each FFT bin spread over the chroma bins by a
    Gaussian of its own width, columns of unit L2 norm, weighted by a Gaussian over octaves
    (centre `ctroct`, width `octwidth`), rows starting at C when `base_c` (librosa's layout)."""
    frequencies = np.arange(1, n_fft) * (sr / n_fft)
    frqbins = n_chroma * hz_to_octs(frequencies, tuning=tuning, bins_per_octave=n_chroma)
    # The 0 Hz bin is placed 1.5 octaves below bin 1 (half a turn of chroma away, broad).
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    widths = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1.0]))
    distance = frqbins[None, :] - np.arange(n_chroma, dtype=np.float64)[:, None]
    half = np.round(n_chroma / 2.0)
    # Wrapped to [-n_chroma/2, n_chroma/2); the 10 turns keep remainder's argument positive.
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2.0 * distance / widths[None, :]) ** 2)
    weights = _normalize_columns(weights, 2.0)
    if octwidth is not None:
        weights = weights * np.exp(-0.5 * ((frqbins / n_chroma - ctroct) / octwidth) ** 2)[None, :]
    if base_c:
        weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : n_fft // 2 + 1], dtype=np.float32)


def normalize_frames(chroma: np.ndarray, norm: float | None) -> np.ndarray:
    """Each frame (last axis) divided by its `norm` (inf = max, 1, 2); None leaves it; frames
    whose norm is below float32's tiny stay as they are (librosa.util.normalize, fill=None)."""
    if norm is None:
        return chroma
    mag = np.abs(chroma).astype(np.float64)
    if norm == np.inf:
        length = mag.max(axis=-1, keepdims=True)
    else:
        length = np.sum(mag**norm, axis=-1, keepdims=True) ** (1.0 / norm)
    length[length < np.finfo(chroma.dtype).tiny] = 1.0
    return (chroma / length).astype(chroma.dtype, copy=False)


def spectral_peaks(power: np.ndarray, *, sr: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.piptrack's peaks (fmin 150 Hz, fmax 4 kHz, threshold 0.1 of each frame's max) of
    `power [shape=(..., T, bins)]`: the interpolated frequency and magnitude of every peak, flat.

    Peaks are local maxima along frequency (above the left neighbour, not below the right) of
    the spectrum gated at the threshold; each is refined by a parabola through its neighbours
    (no shift where the vertex lies over a bin away) and its magnitude raised by half the
    gradient times that shift, as piptrack does everywhere before picking the peaks."""
    freqs = np.arange(power.shape[-1]) * (sr / n_fft)
    in_range = np.flatnonzero((PIPTRACK_FMIN <= freqs) & (freqs < min(PIPTRACK_FMAX, sr / 2.0)))
    if in_range.size == 0:
        return np.zeros(0, power.dtype), np.zeros(0, power.dtype)
    lo, hi = int(in_range[0]), int(in_range[-1]) + 1
    # Gate and compare only the bins in range and their neighbours.
    a, b = max(lo - 1, 0), min(hi + 1, power.shape[-1])
    window = power[..., a:b]
    floor = PIPTRACK_THRESHOLD * power.max(axis=-1, keepdims=True)
    gated = window * (window > floor)
    centre = gated[..., lo - a : hi - a]
    left = gated[..., lo - a - 1 : hi - a - 1] if lo > 0 else np.concatenate([gated[..., :1], gated[..., : hi - a - 1]], axis=-1)
    if hi < power.shape[-1]:
        right = gated[..., lo - a + 1 : hi - a + 1]
    else:
        right = np.concatenate([gated[..., lo - a + 1 :], gated[..., -1:]], axis=-1)
    index = np.nonzero((centre > left) & (centre >= right))
    bins = index[-1] + lo
    lead = index[:-1]
    S = power
    here = S[(*lead, bins)]
    last = S.shape[-1] - 1
    inner = (bins > 0) & (bins < last)
    below = S[(*lead, np.maximum(bins - 1, 0))]
    above = S[(*lead, np.minimum(bins + 1, last))]
    curvature = above.astype(np.float64) + below - 2.0 * here
    slope = (above.astype(np.float64) - below) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(inner & (np.abs(slope) < np.abs(curvature)), -slope / curvature, 0.0).astype(S.dtype)
    # np.gradient: central differences inside, one-sided at the edges
    gradient = np.where(bins == 0, above - here, np.where(bins == last, here - below, (above - below) / S.dtype.type(2)))
    skew = S.dtype.type(0.5) * gradient.astype(S.dtype) * shift
    pitch = ((bins + shift) * float(sr) / n_fft).astype(S.dtype)
    magnitude = (here + skew).astype(S.dtype)
    return pitch, magnitude


def tuning_from_peaks(pitch: np.ndarray, magnitude: np.ndarray, *, bins_per_octave: int = 12) -> float:
    """librosa.estimate_tuning from all of a signal's peaks: keep the peaks at or above the
    median magnitude, and return the left edge of the most common residual bin (0.01 wide, in
    fractions of a chroma bin)."""
    return tuning_from_peak_chunks(lambda: iter([(pitch, magnitude)]), bins_per_octave=bins_per_octave)


def _sortable(values: np.ndarray) -> np.ndarray:
    """float32 → uint32 keys in the same order (negative values flipped)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))


def _median_of_chunks(chunks, count: int) -> np.float32:
    """np.median of the float32 values the `chunks()` passes yield, holding one chunk at a
    time: a histogram of the values' top 16 bits finds the middle ranks, a second pass keeps
    the values of those bins only."""
    ranks = ((count - 1) // 2, count // 2)
    histogram = np.zeros(1 << 16, dtype=np.int64)
    for values in chunks():
        histogram += np.bincount(_sortable(values) >> 16, minlength=1 << 16)
    below = np.concatenate([[0], np.cumsum(histogram)])
    bins = [int(np.searchsorted(below, r, side="right")) - 1 for r in ranks]
    kept = [v[np.isin(_sortable(v) >> 16, bins)] for v in chunks()]
    kept = np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.float32)
    first = int(below[min(bins)])
    middle = kept[[r - first for r in ranks]]
    return np.mean(middle.astype(np.float32))  # as np.median: the mean of the middle two


def tuning_from_peak_chunks(chunks, *, bins_per_octave: int = 12) -> float:
    """`tuning_from_peaks` over peaks that come in chunks: `chunks()` starts a new pass over
    (pitch, magnitude) pairs; three passes, one chunk in memory at a time."""
    count = sum(int((p > 0).sum()) for p, _ in chunks())
    if count == 0:
        threshold = np.float32(0.0)
    else:
        threshold = _median_of_chunks(lambda: (m[p > 0] for p, m in chunks()), count)
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / TUNING_RESOLUTION)) + 1)
    counts = np.zeros(edges.size - 1, dtype=np.int64)
    found = False
    for pitch, magnitude in chunks():
        frequencies = pitch[(magnitude >= threshold) & (pitch > 0)]
        if frequencies.size == 0:
            continue
        found = True
        residual = np.mod(bins_per_octave * hz_to_octs(frequencies), 1.0)
        residual[residual >= 0.5] -= 1.0
        counts += np.histogram(residual, edges)[0]
    if not found:
        return 0.0
    return float(edges[np.argmax(counts)])


__all__ = [
    "chroma_filterbank", "hz_to_octs", "normalize_frames", "spectral_peaks", "tuning_from_peak_chunks", "tuning_from_peaks",
]
