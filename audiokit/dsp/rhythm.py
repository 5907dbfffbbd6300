"""Onset strength, global tempo and beats with librosa's definitions (`librosa.onset.onset_strength`,
`librosa.feature.tempo`, `librosa.beat.beat_track`), from a floored log-mel spectrogram.

`OnsetEnvelope` turns a stream of log-mel frames into the onset envelope; `tempo` and
`track_beats` work on the whole envelope (one number per frame, ~150 kB per hour at librosa's
hop), as librosa's global estimate and dynamic programme need.
"""

from __future__ import annotations

import numpy as np

TEMPOGRAM_CHUNK = 2048  # autocorrelation windows computed at a time (bounded memory)


class OnsetEnvelope:
    """librosa.onset.onset_strength(S=log-mel, lag=1, max_size=1, aggregate=median or mean,
    center=True) over a stream of `(channels, T, n_mels)` floored dB frames."""

    def __init__(self, channels: int, *, n_fft: int, hop_length: int, aggregate: str = "median"):
        self.aggregate = np.median if aggregate == "median" else np.mean
        # center=True: the envelope is delayed by lag + n_fft // (2 hop) frames (zeros first).
        self.parts: list[np.ndarray] = [np.zeros((channels, 1 + n_fft // (2 * hop_length)), dtype=np.float32)]
        self.previous: np.ndarray | None = None
        self.frames = 0

    def push(self, db: np.ndarray) -> None:
        if db.shape[1] == 0:
            return
        self.frames += db.shape[1]
        frames = db if self.previous is None else np.concatenate([self.previous[:, None], db], axis=1)
        self.previous = np.array(db[:, -1], copy=True)
        rise = np.maximum(0.0, frames[:, 1:] - frames[:, :-1])
        if rise.shape[1]:
            self.parts.append(self.aggregate(rise, axis=-1).astype(np.float32))

    def envelope(self) -> np.ndarray:
        """`(channels, frames)`: one value per log-mel frame."""
        return np.concatenate(self.parts, axis=1)[:, : self.frames]


def tempo_frequencies(n_bins: int, *, sr: int, hop_length: int) -> np.ndarray:
    """BPM of each autocorrelation lag (lag 0: inf)."""
    bpms = np.empty(n_bins)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sr / (hop_length * np.arange(1.0, n_bins))
    return bpms


def mean_tempogram(envelope: np.ndarray, win_length: int) -> np.ndarray:
    """librosa.feature.tempogram (hann window, centred, max-normalised), averaged over frames:
    `(n,)` envelope → `(win_length,)`."""
    from scipy import fft

    n = envelope.shape[-1]
    half = win_length // 2
    padded = np.pad(envelope.astype(np.float64), (half, half), mode="linear_ramp", end_values=(0, 0))
    phase = 2.0 * np.pi * np.arange(win_length) / win_length
    window = 0.5 - 0.5 * np.cos(phase)  # periodic hann
    n_fft = fft.next_fast_len(2 * win_length - 1, real=True)
    total = np.zeros(win_length)
    for start in range(0, n, TEMPOGRAM_CHUNK):
        stop = min(n, start + TEMPOGRAM_CHUNK)
        frames = np.lib.stride_tricks.sliding_window_view(padded, win_length)[start:stop] * window
        spectrum = fft.rfft(frames, n=n_fft, axis=-1)
        autocorr = fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_fft, axis=-1)[:, :win_length]
        peak = np.abs(autocorr).max(axis=-1, keepdims=True)
        peak[peak < np.finfo(np.float64).tiny] = 1.0
        total += (autocorr / peak).sum(axis=0)
    return total / max(n, 1)


def tempo(
    envelope: np.ndarray,
    *,
    sr: int,
    hop_length: int,
    start_bpm: float = 120.0,
    std_bpm: float = 1.0,
    ac_size: float = 8.0,
    max_tempo: float | None = 320.0,
) -> tuple[float, float]:
    """librosa.feature.tempo of an onset envelope: the lag of the frame-averaged tempogram
    weighted by a log-normal prior around `start_bpm`. Returns (BPM, confidence), the
    confidence being that averaged, max-normalised autocorrelation at the chosen lag (0..1)."""
    win_length = int(int(ac_size * sr) // hop_length)
    tg = mean_tempogram(envelope, win_length)
    bpms = tempo_frequencies(win_length, sr=sr, hop_length=hop_length)
    with np.errstate(divide="ignore"):
        logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    if max_tempo is not None:
        logprior[: int(np.argmax(bpms < max_tempo))] = -np.inf
    best = int(np.argmax(np.log1p(1e6 * tg) + logprior))
    return float(bpms[best]), float(np.clip(tg[best], 0.0, 1.0))


def track_beats(
    envelope: np.ndarray, bpm: float, *, frame_rate: float, tightness: float = 100.0, trim: bool = True
) -> np.ndarray:
    """librosa.beat.beat_track's dynamic programme (Ellis 2007) for a fixed tempo: the frames
    of the beats, in order."""
    if not envelope.any() or bpm <= 0:
        return np.zeros(0, dtype=np.int64)
    env = envelope.astype(np.float32)
    env = env / (env.std(ddof=1) + np.finfo(np.float32).tiny) if env.size > 1 else env
    period = float(np.round(frame_rate * 60.0 / bpm))
    lags = np.arange(-period, period + 1)
    window = np.exp(-0.5 * (lags * 32.0 / period) ** 2)
    local = _local_score(env, window)
    # librosa's compiled programme takes tightness as float32
    backlink, cumulative = _dynamic_programme(local, period, float(np.float32(tightness)))
    beats = np.zeros(local.size, dtype=bool)
    n = _last_beat(cumulative)
    while n >= 0:
        beats[n] = True
        n = backlink[n]
    return np.flatnonzero(_trim(local, beats, trim))


def _local_score(env: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Same-mode convolution of the envelope with the beat window, in float64 and summed one
    window tap at a time as librosa's compiled loop does (its rounding decides near-ties in the
    dynamic programme)."""
    count, taps = env.size, window.size
    half = taps // 2
    local = np.zeros(count, dtype=np.float64)
    source_all = env.astype(np.float64)
    for k in range(taps):
        # local[i] += window[k] * env[i + half - k] for 1 <= i + half - k <= count - 1
        first, last = max(0, k - half + 1), min(count - 1, count - 1 - half + k)
        if first <= last:
            local[first : last + 1] += window[k] * source_all[first + half - k : last + half - k + 1]
    return local


def _dynamic_programme(local: np.ndarray, period: float, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """Best cumulative score per frame and its best predecessor beat, among the frames
    round(period/2) .. 2*period back; frames a stride of round(period/2) apart depend on
    earlier ones only, so each stride is one vectorised step."""
    count = local.size
    nearest = int(np.round(period / 2))
    farthest = int(2 * period)
    gaps = np.arange(nearest, farthest + 1)  # candidate distances, nearest first (ties: latest loc)
    penalty = np.float64(tightness) * (np.log(gaps) - np.log(period)) ** 2
    cumulative = np.zeros(count, dtype=np.float64)
    backlink = np.full(count, -1, dtype=np.int64)
    threshold = 0.01 * float(local.max())
    first_beat = True
    step = max(nearest, 1)
    for start in range(0, count, step):
        frames = np.arange(start, min(count, start + step))
        locations = frames[:, None] - gaps[None, :]
        valid = locations >= 0
        scores = np.where(valid, cumulative[np.maximum(locations, 0)] - penalty[None, :], -np.inf)
        best = np.argmax(scores, axis=1)
        has = valid.any(axis=1)
        best_score = scores[np.arange(frames.size), best]
        cumulative[frames] = np.where(has, local[frames] + best_score, local[frames])
        links = np.where(has, locations[np.arange(frames.size), best], -1)
        if first_beat:
            # Until a frame's local score reaches 1 % of the maximum, frames start no chain.
            strong = np.flatnonzero(local[frames] >= threshold)
            cut = strong[0] if strong.size else frames.size
            links[:cut] = -1
            first_beat = cut == frames.size
        backlink[frames] = links
    return backlink, cumulative


def _local_maxima(x: np.ndarray) -> np.ndarray:
    left = np.concatenate([x[:1], x[:-1]])
    right = np.concatenate([x[1:], x[-1:]])
    return (x > left) & (x >= right)


def _last_beat(cumulative: np.ndarray) -> int:
    """The last local maximum of the cumulative score at least half their median."""
    peaks = _local_maxima(cumulative)
    if not peaks.any():
        return cumulative.size - 1
    threshold = 0.5 * np.median(cumulative[peaks])
    candidates = np.flatnonzero(peaks & (cumulative >= threshold))
    return int(candidates[-1]) if candidates.size else cumulative.size - 1


def _trim(local: np.ndarray, beats: np.ndarray, trim: bool) -> np.ndarray:
    """Drop leading and trailing beats whose local score is at most half the RMS of the
    smoothed beat scores (or zero, without `trim`)."""
    beats = beats.copy()
    window = np.hanning(5)
    smooth = np.convolve(local[beats], window)[len(window) // 2 : local.size + len(window) // 2]
    threshold = 0.5 * float(np.sqrt(np.mean(smooth**2))) if trim and smooth.size else 0.0
    n = 0
    while n < local.size and local[n] <= threshold:
        beats[n] = False
        n += 1
    n = local.size - 1
    while n >= 0 and local[n] <= threshold:
        beats[n] = False
        n -= 1
    return beats


__all__ = ["OnsetEnvelope", "mean_tempogram", "tempo", "tempo_frequencies", "track_beats"]
