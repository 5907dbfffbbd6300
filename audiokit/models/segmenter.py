"""The speech/music/noise frame classifier behind the `segments` and `segment_probs` extractors.

Recipe (shared by the extractors and `scripts/train_segmenter.py`, so training sees exactly the
features inference computes):

1. 16 kHz audio, 32 ms Hann frames every 20 ms (frame `t` centred at `t * 0.02` s).
2. Per frame: a 40-band log-mel spectrum, its absolute change since the previous frame,
   the frame level in dBFS, spectral flatness, peakiness (how far partials stand out of the
   spectral envelope: tones vs noise of any colour) and stability (how much that fine
   structure persists from frame to frame: sustained notes do, syllables less, noise not),
   and loudness changes over 100 ms in 8 band groups and overall (syllable rhythm); and pitch
   continuity from a per-frame f0 (normalised autocorrelation): voicing, held notes, pitch
   glide, voiced-run length (singing and wind hold notes, speech glides).
3. Per decision, statistics of those over 0.5 s and 2 s windows centred on it: means and
   standard deviations, and the shares of voiced frames in held notes and at a steady pitch.
   Window means of the log-mel are taken relative to the window's own level, so the classifier
   sees spectral shape and modulation, not loudness.
4. Small networks (numpy inference), averaged, give p(speech), p(music), p(noise) for every
   second frame (decision `k` is centred at `k * 0.04` s): MLPs over those window statistics
   and ConvNets over the per-frame vectors themselves, ±CONV_HALF frames around each decision
   (the shipped segmenter-v4 is six ConvNets).

Streaming needs 1 s of look-ahead (1.26 s for ConvNets), so `FrameFeatureStream` holds two to
two and a half seconds of per-frame features (under 100 kB) plus the current block, whatever
the file's length.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from audiokit.dsp import StreamFramer, frame, mel_filterbank, stft_window
from audiokit.dsp.spectrum import power_spectrum

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 320
FRAME_SECONDS = HOP / SAMPLE_RATE
# The classifier decides every second analysis frame (40 ms): the windows it looks at span
# 0.5-2 s, so finer steps add cost, not information; boundaries stay well inside the
# 0.25 s scoring collar.
DECISION_STRIDE = 2
DECISION_SECONDS = DECISION_STRIDE * FRAME_SECONDS
N_MELS = 40
FMIN, FMAX = 60.0, 8000.0
# Frames either side of a decision: 0.5 s and 2 s windows. The short one places boundaries,
# the long one sees enough syllables, pauses and beats to tell speech from music.
WINDOW_HALVES = (12, 50)
LONG_HALF = max(WINDOW_HALVES)  # the stream's look-ahead for the window statistics
# Convolutional members see the per-frame vectors themselves, this many frames either side of
# a decision (1.26 s): the longest pattern of syllables, notes or beats they can use.
CONV_HALF = 63
CLASSES = ("speech", "music", "noise")
WEIGHTS_PATH = Path(__file__).with_name("segmenter-v4.npz")

_MEL_FLOOR = 1e-9  # -90 dB: keeps quiet bands from dominating the statistics
_FINE_BINS = slice(3, 200)  # ~90 Hz – 6.2 kHz: where tonal partials live at this resolution
_ENVELOPE_BINS = 9  # the spectral envelope: a 280 Hz moving average of the log spectrum

# Syllables come 3-6 times a second: loudness changes over 100 ms, per group of 5 mel bands
# and overall, show that rhythm (music's changes are slower or steadier).
_SYLLABLE_LAG = 5
_BAND_GROUP = 5
_N_SYLLABLE = N_MELS // _BAND_GROUP + 1

# Pitch continuity (singing and wind hold notes; speech glides and voices only short stretches):
# a per-frame f0 from the normalised autocorrelation of the band-limited power spectrum.
_PITCH_BINS = slice(2, 113)  # ~60 Hz – 3.5 kHz: the harmonics that carry the period
_MIN_LAG, _MAX_LAG = 20, 229  # 800 Hz down to 70 Hz
_VOICED = 0.5  # normalised autocorrelation peak above which a frame counts as voiced
_VOICED_FLOOR_DB = -60.0  # quieter frames are never voiced (room tone, codec hiss)
_HELD_FRAMES = 8  # a held note: voiced with the pitch within a semitone over 160 ms
_HELD_RANGE = 1.0  # semitones (max - min over the run; vibrato stays inside)
_GLIDE_CAP = 2.0  # semitones per frame: octave jumps and voicing changes count as this
_STEADY_STEP = 0.25  # semitones per frame: a steady pitch (speech's median is about 0.4)
_RUN_CAP = 50  # frames (1 s): voiced-run lengths beyond this all look sustained

# Per-frame vector layout:
# [logmel (40) | |Δ logmel| (40) | level, flatness, peakiness, stability | |Δ100ms| (9) |
#  voicing, voiced, held, pitch range over 160 ms, pitch glide, voiced-run length, steady]
_N_SCALARS = 4
_LEVEL = 2 * N_MELS
_SYLLABLE = _LEVEL + _N_SCALARS
_PITCH = _SYLLABLE + _N_SYLLABLE
_N_PITCH = 7
_VOICED_COLUMN, _HELD_COLUMN, _GLIDE_COLUMN = _PITCH + 1, _PITCH + 2, _PITCH + 4
_STEADY_COLUMN = _PITCH + 6
_N_BASE = _PITCH + _N_PITCH
# Columns whose window standard deviation is a feature: log-mel, the scalars, voicing,
# pitch range and glide.
_STD_COLUMNS = np.r_[0:N_MELS, _LEVEL : _LEVEL + _N_SCALARS, _PITCH, _PITCH + 3, _PITCH + 4]
# Per window also: the shares of voiced frames in held notes and with a steady pitch, and the
# mean glide of voiced frames.
_N_RATIOS = 3
_RATIO_PRIOR = 0.05  # voiced share added to the denominators (a window with no voiced frame)
N_FEATURES = len(WINDOW_HALVES) * (_N_BASE + len(_STD_COLUMNS) + _N_RATIOS)


class _Analysis:
    """Window and filterbank, built once."""

    def __init__(self):
        self.window = stft_window(N_FFT, N_FFT, "hann")
        mel_basis_t = mel_filterbank(
            sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX
        ).T
        # One product gives the mel bands and, in the last column, the frame's mean square
        # (sum(|X|^2) * level_scale, Parseval, one-sided).
        level_scale = 2.0 / (N_FFT * np.sum(self.window.astype(np.float64) ** 2))
        level_column = np.full((mel_basis_t.shape[0], 1), level_scale, dtype=np.float32)
        self.bands_t = np.ascontiguousarray(np.concatenate([mel_basis_t, level_column], axis=1))
        # Log spectrum -> its fine structure (minus a centred moving average) as one product.
        n_fine = len(range(*_FINE_BINS.indices(N_FFT // 2 + 1)))
        self.detail_t = np.ascontiguousarray(
            (np.eye(n_fine) - _moving_average_matrix(n_fine, _ENVELOPE_BINS)).T.astype(np.float32)
        )
        # Band loudness groups: mean of each 5 mel bands.
        groups = np.zeros((N_MELS, N_MELS // _BAND_GROUP), dtype=np.float32)
        for g in range(N_MELS // _BAND_GROUP):
            groups[g * _BAND_GROUP : (g + 1) * _BAND_GROUP, g] = 1.0 / _BAND_GROUP
        self.groups = groups
        # The window's own circular autocorrelation: dividing by it undoes the taper's decay over
        # lag (Boersma 1993), so a periodic frame scores near 1 whatever its period.
        window64 = self.window.astype(np.float64)
        taper = np.fft.irfft(np.abs(np.fft.rfft(window64)) ** 2, N_FFT)
        self.lag_gain = (taper[0] / taper[_MIN_LAG : _MAX_LAG + 2]).astype(np.float32)
        self.short_lag_bias = (1.0 - 0.2 * np.arange(_MAX_LAG + 1 - _MIN_LAG) / _MAX_LAG).astype(
            np.float32
        )


@lru_cache(maxsize=1)
def _analysis() -> _Analysis:
    return _Analysis()


def base_features(
    segment: np.ndarray, previous: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame vectors for `segment [shape=(channels, n)]`, framed by `frame(…, N_FFT, HOP)`.

    `previous` is the carry from the preceding call (the last frames' log-mel, fine spectrum
    and band loudness; None at the file start); returns `(features (channels, T, 100), carry)`.
    """
    a = _analysis()
    frames = frame(segment, N_FFT, HOP)  # (C, T, N_FFT)
    power = power_spectrum(frames, a.window)  # (C, T, 257)
    bands = power @ a.bands_t
    mel_power = bands[..., :N_MELS] + np.float32(_MEL_FLOOR)
    log_mel = np.log(mel_power)
    mel = log_mel * np.float32(10.0 / np.log(10.0))
    # Windowed frame level in dBFS (a full-scale sine reads about -3 dB).
    level = 10.0 * np.log10(bands[..., N_MELS] + np.float32(1e-10))
    # Flatness over mel bands: geometric over arithmetic mean (1 = noise-like, ~0 = tonal).
    flatness = np.exp(np.mean(log_mel, axis=-1)) / np.mean(mel_power, axis=-1)
    # Fine structure: the log spectrum minus its envelope. Partials of notes and voices stand
    # out of it as peaks; noise leaves a random ripple whatever its colour.
    log_spectrum = np.log(power[..., _FINE_BINS] + np.float32(1e-10))
    fine = log_spectrum @ a.detail_t
    energy = np.einsum("ctk,ctk->ct", fine, fine)
    peakiness = np.sqrt(energy / np.float32(fine.shape[-1]))
    loudness = np.concatenate([mel @ a.groups, level[..., None]], axis=-1)
    if previous is None:
        prev_mel, prev_fine = mel[:, :1], fine[:, :1]
        prev_loudness = np.repeat(loudness[:, :1], _SYLLABLE_LAG, axis=1)
    else:
        prev_mel, prev_fine, prev_loudness = previous[:3]
    loudness_history = np.concatenate([prev_loudness, loudness], axis=1)
    mel_before = np.concatenate([prev_mel, mel[:, :-1]], axis=1)
    fine_before = np.concatenate([prev_fine, fine[:, :-1]], axis=1)
    energy_before = np.concatenate(
        [np.einsum("ctk,ctk->ct", prev_fine, prev_fine), energy[:, :-1]], axis=1
    )
    stability = np.einsum("ctk,ctk->ct", fine, fine_before) / (
        np.sqrt(energy * energy_before) + 1e-6
    )
    out = np.empty(mel.shape[:2] + (_N_BASE,), dtype=np.float32)
    out[..., :N_MELS] = mel
    np.abs(mel - mel_before, out=out[..., N_MELS : 2 * N_MELS])
    out[..., _LEVEL] = level
    out[..., _LEVEL + 1] = flatness
    out[..., _LEVEL + 2] = peakiness
    out[..., _LEVEL + 3] = stability
    np.abs(loudness - loudness_history[:, : loudness.shape[1]], out=out[..., _SYLLABLE:_PITCH])
    pitch_carry = None if previous is None else previous[3:]
    out[..., _PITCH:], pitch_carry = _pitch_features(power, level, pitch_carry)
    return out, (mel[:, -1:], fine[:, -1:], loudness_history[:, -_SYLLABLE_LAG:], *pitch_carry)


def _pitch_features(
    power: np.ndarray, level: np.ndarray, previous: tuple | None
) -> tuple[np.ndarray, tuple]:
    """Pitch-continuity columns `(C, T, 7)` from the power spectra `(C, T, 257)`.

    Per frame: voicing (the normalised autocorrelation peak, 0–1), voiced (0/1), held (voiced
    through the last 160 ms with the pitch within a semitone), the pitch range over those frames
    (semitones, capped), the glide since the previous frame (semitones, capped; the cap when
    either frame is unvoiced), the length of the voiced run so far (seconds, capped at 1 s) and
    steady (both frames voiced, the pitch moved less than a quarter semitone).
    `previous` carries the last frames' pitch, voicing and run length across blocks.
    """
    import scipy.fft

    a = _analysis()
    channels, frames = power.shape[:2]
    band = np.zeros_like(power)
    band[..., _PITCH_BINS] = power[..., _PITCH_BINS]
    autocorrelation = scipy.fft.irfft(band, N_FFT, axis=-1)
    lags = autocorrelation[..., _MIN_LAG : _MAX_LAG + 2] * a.lag_gain
    lags /= autocorrelation[..., :1] + np.float32(1e-12)
    # A slight preference for short lags: sub-octave peaks of a periodic frame score about as
    # high as the period itself.
    best = np.argmax(lags[..., :-1] * a.short_lag_bias, axis=-1)
    best = np.clip(best, 1, _MAX_LAG - _MIN_LAG - 1)
    take = np.take_along_axis
    centre = take(lags, best[..., None], -1)[..., 0]
    left = take(lags, best[..., None] - 1, -1)[..., 0]
    right = take(lags, best[..., None] + 1, -1)[..., 0]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -1e-6), 0.0)
    lag = _MIN_LAG + best + np.clip(offset, -0.5, 0.5)
    voicing = np.clip(centre, 0.0, 1.0)
    voiced = (voicing > _VOICED) & (level > _VOICED_FLOOR_DB)
    pitch = np.float32(12.0) * np.log2(np.float32(SAMPLE_RATE) / lag.astype(np.float32))
    if previous is None:
        prev_pitch = np.repeat(pitch[:, :1], _HELD_FRAMES - 1, axis=1)
        prev_voiced = np.zeros((channels, _HELD_FRAMES - 1), dtype=bool)
        prev_run = np.zeros((channels, 1), dtype=np.int64)
    else:
        prev_pitch, prev_voiced, prev_run = previous
    pitch_history = np.concatenate([prev_pitch, pitch], axis=1)
    voiced_history = np.concatenate([prev_voiced, voiced], axis=1)
    recent = np.lib.stride_tricks.sliding_window_view(pitch_history, _HELD_FRAMES, axis=1)
    all_voiced = np.lib.stride_tricks.sliding_window_view(voiced_history, _HELD_FRAMES, axis=1)
    all_voiced = all_voiced.all(axis=-1)
    spread = np.where(all_voiced, recent.max(axis=-1) - recent.min(axis=-1), 3.0 * _HELD_RANGE)
    spread = np.minimum(spread, 3.0 * _HELD_RANGE)
    both = voiced & voiced_history[:, _HELD_FRAMES - 2 : -1]
    step = np.abs(pitch - pitch_history[:, _HELD_FRAMES - 2 : -1])
    glide = np.where(both, np.minimum(step, _GLIDE_CAP), _GLIDE_CAP)
    # Voiced-run length: frames since the last unvoiced one (the run may start in a past block).
    index = np.arange(frames)
    last_unvoiced = np.where(voiced, -1 - prev_run, index[None, :])
    last_unvoiced = np.maximum.accumulate(last_unvoiced, axis=1)
    run = np.where(voiced, index[None, :] - last_unvoiced, 0)
    out = np.empty((channels, frames, _N_PITCH), dtype=np.float32)
    out[..., 0] = voicing
    out[..., 1] = voiced
    out[..., 2] = all_voiced & (spread <= _HELD_RANGE)
    out[..., 3] = spread
    out[..., 4] = glide
    out[..., 5] = np.minimum(run, _RUN_CAP) * FRAME_SECONDS
    out[..., 6] = both & (step < _STEADY_STEP)
    carry = (
        pitch_history[:, -(_HELD_FRAMES - 1) :],
        voiced_history[:, -(_HELD_FRAMES - 1) :],
        run[:, -1:],
    )
    return out, carry


def _moving_average_matrix(n: int, width: int) -> np.ndarray:
    """`(n, n)` matrix `A` with `A @ x` the centred moving average of `x` (shorter at the edges)."""
    centre = np.arange(n)
    lo = np.maximum(centre - width // 2, 0)
    hi = np.minimum(centre + width // 2 + 1, n)
    columns = np.arange(n)[None, :]
    inside = (columns >= lo[:, None]) & (columns < hi[:, None])
    return inside / (hi - lo)[:, None]


def window_statistics(
    base: np.ndarray, first: int, centres: np.ndarray, total: int | None
) -> np.ndarray:
    """Context features for frames `centres` from `base [shape=(channels, n, 100)]`.

    `base[:, i]` is frame `first + i`; windows are cut to frames that exist (`>= 0` and, when the
    file's `total` frame count is known, `< total`) and are assumed present in `base`.
    Returns `(channels, len(centres), N_FEATURES)` float32.
    """
    channels, n, _ = base.shape
    # float64 running sums: window sums then do not depend on where the buffer starts.
    values = base.astype(np.float64)
    sums = np.zeros((channels, n + 1, _N_BASE), dtype=np.float64)
    np.cumsum(values, axis=1, out=sums[:, 1:])
    squares = np.zeros((channels, n + 1, len(_STD_COLUMNS)), dtype=np.float64)
    np.cumsum(values[..., _STD_COLUMNS] ** 2, axis=1, out=squares[:, 1:])
    last = (total if total is not None else first + n) - 1
    parts = []
    for half in WINDOW_HALVES:
        lo = np.maximum(centres - half, 0) - first
        hi = np.minimum(centres + half, last) - first + 1
        count = (hi - lo).astype(np.float64)[None, :, None]
        mean = (sums[:, hi] - sums[:, lo]) / count
        mean_sq = (squares[:, hi] - squares[:, lo]) / count
        std = np.sqrt(np.maximum(mean_sq - mean[..., _STD_COLUMNS] ** 2, 0.0))
        # Of the voiced frames: the shares in held notes and steady, and the mean glide
        # (smoothed towards "none held, full glide" when few frames are voiced).
        voiced = mean[..., _VOICED_COLUMN] + _RATIO_PRIOR
        held = mean[..., _HELD_COLUMN] / voiced
        steady = mean[..., _STEADY_COLUMN] / voiced
        voiced_glide = (
            mean[..., _GLIDE_COLUMN] - (1.0 - mean[..., _VOICED_COLUMN]) * _GLIDE_CAP
            + _RATIO_PRIOR * _GLIDE_CAP
        ) / voiced
        # Spectral shape relative to the window's own loudness.
        mean[..., :N_MELS] -= mean[..., :N_MELS].mean(axis=-1, keepdims=True)
        parts += [mean, std, held[..., None], steady[..., None], voiced_glide[..., None]]
    return np.concatenate(parts, axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MLP:
    """Standardisation and the layers of one network over a decision's window statistics (ReLU
    between layers, softmax out)."""

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        x = (x - self.mean) * self.scale
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            if i < len(self.layers) - 1:
                np.maximum(x, 0.0, out=x)
        return _softmax(x)


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    weight: np.ndarray  # (out, in, taps), as torch's Conv1d
    bias: np.ndarray
    dilation: int
    stride: int
    residual: bool  # output = input (cropped) + ReLU(conv(input))

    @cached_property
    def matrix(self) -> np.ndarray:
        """The weights as one `(out, taps * in)` matrix, tap-major like `__call__`'s columns."""
        out_ch, _, taps = self.weight.shape
        return np.ascontiguousarray(self.weight.transpose(0, 2, 1).reshape(out_ch, -1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """`x (in, n)` → `(out, m)`, valid positions only (no padding)."""
        taps = self.weight.shape[2]
        m = (x.shape[1] - (taps - 1) * self.dilation - 1) // self.stride + 1
        stop = (m - 1) * self.stride + 1
        columns = np.concatenate(
            [x[:, i * self.dilation : i * self.dilation + stop : self.stride] for i in range(taps)]
        )
        return self.matrix @ columns + self.bias[:, None]


@dataclasses.dataclass(frozen=True)
class ConvNet:
    """1-D convolutions over the per-frame vectors around each decision (log-mel relative to
    the frame's mean band, so it sees spectral shape, not loudness), softmax out. Valid
    convolutions: decision `k` sees frames `2k ± CONV_HALF` exactly, so a stream computes it
    from those frames alone, in any blocks; frames past either end of the file are given as NaN
    and count as zeros after standardisation (the training programmes were padded so)."""

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[ConvLayer, ...]

    @property
    def half(self) -> int:
        """Frames the network sees either side of a decision."""
        half, step = 0, 1
        for layer in self.layers:
            half += (layer.weight.shape[2] - 1) * layer.dilation // 2 * step
            step *= layer.stride
        return half

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """`frames (2k - 1 + 2 * half, 100)` → `(k, 3)` for the k decisions they centre."""
        return self.probabilities_of_inputs(conv_inputs(frames))

    def probabilities_of_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """As `probabilities`, from `conv_inputs(frames)` (an ensemble computes them once)."""
        x = np.nan_to_num((inputs - self.mean) * self.scale, nan=0.0).T
        for i, layer in enumerate(self.layers):
            if layer.residual:
                crop = (layer.weight.shape[2] - 1) * layer.dilation // 2
                x = x[:, crop:-crop] + np.maximum(layer(x), 0.0)
            else:
                x = layer(x)
                if i < len(self.layers) - 1:
                    np.maximum(x, 0.0, out=x)
        return _softmax(np.ascontiguousarray(x.T))


def conv_inputs(frames: np.ndarray) -> np.ndarray:
    """Per-frame vectors as a ConvNet takes them (a copy): log-mel relative to the frame's
    mean band."""
    x = frames.astype(np.float32)
    x[:, :N_MELS] -= x[:, :N_MELS].mean(axis=1, keepdims=True)
    return x


def _softmax(x: np.ndarray) -> np.ndarray:
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _member(data, prefix: str, path) -> MLP | ConvNet:
    n_layers = int(data[f"{prefix}n_layers"])
    mean = data[f"{prefix}feature_mean"].astype(np.float32)
    scale = data[f"{prefix}feature_scale"].astype(np.float32)
    if f"{prefix}layout0" in data:  # a ConvNet: (dilation, stride, residual) per layer
        layers = tuple(
            ConvLayer(
                data[f"{prefix}w{i}"].astype(np.float32),
                data[f"{prefix}b{i}"].astype(np.float32),
                *(int(v) for v in data[f"{prefix}layout{i}"]),
            )
            for i in range(n_layers)
        )
        member = ConvNet(mean, scale, layers)
        inputs, outputs = layers[0].weight.shape[1], layers[-1].weight.shape[0]
        if member.half != CONV_HALF or np.prod([layer.stride for layer in layers]) != DECISION_STRIDE:
            raise ValueError(
                f"{path}: a convolutional network must see ±{CONV_HALF} frames and decide "
                f"every {DECISION_STRIDE} frames"
            )
        expected = _N_BASE
    else:
        layers = tuple(
            (data[f"{prefix}w{i}"].astype(np.float32), data[f"{prefix}b{i}"].astype(np.float32))
            for i in range(n_layers)
        )
        member = MLP(mean, scale, layers)
        inputs, outputs = layers[0][0].shape[0], layers[-1][0].shape[1]
        expected = N_FEATURES
    if mean.shape != (expected,) or inputs != expected:
        raise ValueError(
            f"{path}: weights expect {mean.shape[0]} features, the recipe makes {expected}"
        )
    if outputs != len(CLASSES):
        raise ValueError(f"{path}: the last layer must have {len(CLASSES)} outputs")
    return member


@dataclasses.dataclass(frozen=True)
class FrameClassifier:
    """Small networks whose probabilities are averaged; pure numpy. MLPs see a decision's
    window statistics; ConvNets the per-frame vectors around it. With both kinds, the ConvNets'
    average counts `conv_share` and the MLPs' the rest (the kinds err on different audio; this
    way adding networks of one kind does not drown the other).

    `class_offsets` (one per class) are added to the average's log-probabilities before it is
    renormalised: how much more (or less) evidence a class needs than the networks learned to
    ask for with their class-balanced losses.

    Weights file (`.npz`): `version`, `n_members`, optionally `conv_share` (default 0.5) and
    `class_offsets` (default none), and per member `j` the arrays `m{j}_feature_mean`,
    `m{j}_feature_scale`, `m{j}_n_layers`, `m{j}_w{i}`, `m{j}_b{i}`: an MLP's weights
    `(in, out)`; a ConvNet's `(out, in, taps)` plus `m{j}_layout{i}` (dilation, stride, residual).
    """

    members: tuple[MLP | ConvNet, ...]
    version: str
    conv_share: float = 0.5
    class_offsets: tuple[float, ...] = (0.0,) * len(CLASSES)

    @classmethod
    def load(cls, path: str | Path = WEIGHTS_PATH) -> FrameClassifier:
        """Read a weights file; ValueError (naming the file) if it is missing or does not fit."""
        try:
            with np.load(path, allow_pickle=False) as data:
                version = str(data["version"])
                members = tuple(
                    _member(data, f"m{j}_", path) for j in range(int(data["n_members"]))
                )
                conv_share = float(data["conv_share"]) if "conv_share" in data else 0.5
                offsets = data["class_offsets"] if "class_offsets" in data else np.zeros(len(CLASSES))
        except (OSError, KeyError) as exc:
            raise ValueError(f"cannot read classifier weights {path}: {exc}") from None
        if not members:
            raise ValueError(f"{path}: no networks in the weights file")
        if not 0.0 < conv_share < 1.0:
            raise ValueError(f"{path}: conv_share must be between 0 and 1")
        if offsets.shape != (len(CLASSES),) or not np.all(np.abs(offsets) <= 10.0):
            raise ValueError(f"{path}: class_offsets must be {len(CLASSES)} numbers within ±10")
        return cls(members, version, conv_share, tuple(float(v) for v in offsets))

    @cached_property
    def mlps(self) -> tuple[MLP, ...]:
        return tuple(m for m in self.members if isinstance(m, MLP))

    @cached_property
    def convnets(self) -> tuple[ConvNet, ...]:
        return tuple(m for m in self.members if isinstance(m, ConvNet))

    @cached_property
    def _first_layers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every MLP's standardisation and first layer as one matrix, bias and the column
        edges of each member: one wide product instead of one per member (most of the work)."""
        weight = np.concatenate([m.scale[:, None] * m.layers[0][0] for m in self.mlps], axis=1)
        bias = np.concatenate(
            [m.layers[0][1] - (m.mean * m.scale) @ m.layers[0][0] for m in self.mlps]
        )
        edges = np.cumsum([0] + [m.layers[0][0].shape[1] for m in self.mlps])
        return weight.astype(np.float32), bias.astype(np.float32), edges

    def probabilities(self, features: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """`features [shape=(..., k, N_FEATURES)]` (and, for ConvNets, `frames (..., 2k - 1 +
        2 * CONV_HALF, 100)`: the per-frame vectors around those decisions, NaN past the file's
        ends) → class probabilities `(..., k, 3)`, float32."""
        total = self._mlp_average(features) if self.mlps else None
        if self.convnets:
            if frames is None:
                raise ValueError("this classifier's convolutional networks need the frames")
            conv = self._conv_average(features.shape[-2], frames)
            if total is None:
                total = conv
            else:
                total *= np.float32(1.0 - self.conv_share)
                total += np.float32(self.conv_share) * conv
        if any(self.class_offsets):
            total *= np.exp(np.array(self.class_offsets, dtype=np.float32))
            total /= total.sum(axis=-1, keepdims=True)
        return total

    def _mlp_average(self, features: np.ndarray) -> np.ndarray:
        shape = features.shape[:-1]
        weight, bias, edges = self._first_layers
        hidden = features.reshape(-1, N_FEATURES) @ weight
        hidden += bias
        total = None
        for j, member in enumerate(self.mlps):
            x = hidden[:, edges[j] : edges[j + 1]]  # each member's own columns, used once
            for w, b in member.layers[1:]:
                np.maximum(x, 0.0, out=x)  # ReLU between layers
                x = x @ w + b
            x = _softmax(x)
            total = x if total is None else total + x
        total /= np.float32(len(self.mlps))
        return total.reshape(shape + (len(CLASSES),))

    def _conv_average(self, decisions: int, frames: np.ndarray) -> np.ndarray:
        if decisions == 0:
            return np.zeros(frames.shape[:-2] + (0, len(CLASSES)), np.float32)
        if frames.shape[-2] != 2 * decisions - 1 + 2 * CONV_HALF:
            raise ValueError(f"{decisions} decisions need {2 * decisions - 1 + 2 * CONV_HALF} frames")
        rows = frames.reshape(-1, *frames.shape[-2:])
        inputs = [conv_inputs(r) for r in rows]
        out = np.stack(
            [sum(m.probabilities_of_inputs(x) for m in self.convnets) / len(self.convnets) for x in inputs]
        )
        return out.reshape(frames.shape[:-2] + (decisions, len(CLASSES))).astype(np.float32)


@lru_cache(maxsize=4)
def load_classifier(path: str | None = None) -> FrameClassifier:
    """The shipped classifier (or one at `path`), loaded once per process."""
    return FrameClassifier.load(WEIGHTS_PATH if path is None else path)


class Decisions(NamedTuple):
    """What a stream has ready for k decisions of each of C channels."""

    features: np.ndarray  # (C, k, N_FEATURES) window statistics
    level: np.ndarray  # (C, k) frame level, dBFS
    # (C, 2k - 1 + 2 * CONV_HALF, 100) per-frame vectors, NaN off the file; None unless the
    # stream was asked for them
    frames: np.ndarray | None


class FrameFeatureStream:
    """16 kHz `(channels, n)` blocks in; `Decisions` out, in order.

    Decision `k` is analysis frame `t = k * DECISION_STRIDE`; it is ready once frame
    `t + context` exists (or the file has ended), `context` being `LONG_HALF` or, when the
    stream hands out `frames` for ConvNets, `CONV_HALF`. Holds the last `context` frames' base
    vectors plus those not yet decided. Without frames it decides exactly as before ConvNets
    existed (same stretches, so the same float rounding: segmenter-v3's MLPs rebuild bit for
    bit).
    """

    def __init__(self, frames: bool = False):
        self.frames = frames
        self.context = max(LONG_HALF, CONV_HALF) if frames else LONG_HALF
        self.framer = StreamFramer(N_FFT, HOP, center=True, pad_mode="constant")
        self._carry = None
        self._base: np.ndarray | None = None  # frames _first .. _first + len - 1
        self._first = 0
        self._next = 0  # next decision's analysis frame (a multiple of DECISION_STRIDE)

    def push(self, block: np.ndarray) -> Decisions:
        return self._advance(self.framer.push(block), final=False)

    def finish(self) -> Decisions:
        return self._advance(self.framer.finish(), final=True)

    def _advance(self, segment: np.ndarray, final: bool) -> Decisions:
        if segment.ndim == 2 and segment.shape[-1] >= N_FFT:
            new, self._carry = base_features(segment, self._carry)
            self._base = new if self._base is None else np.concatenate([self._base, new], axis=1)
        channels = 0 if self._base is None else self._base.shape[0]
        end = self._first + (0 if self._base is None else self._base.shape[1])  # frames so far
        ready_to = end if final else max(self._next, end - self.context)
        centres = np.arange(self._next, ready_to, DECISION_STRIDE)
        if centres.size == 0:
            return Decisions(
                np.zeros((channels, 0, N_FEATURES), np.float32),
                np.zeros((channels, 0), np.float32),
                np.zeros((channels, 0, _N_BASE), np.float32) if self.frames else None,
            )
        features = window_statistics(self._base, self._first, centres, end if final else None)
        level = self._base[:, centres - self._first, _LEVEL]
        frames = None
        if self.frames:  # the frames around these decisions, NaN where they fall off the file
            lo, hi = int(centres[0]) - CONV_HALF, int(centres[-1]) + CONV_HALF + 1
            frames = np.full((channels, hi - lo, _N_BASE), np.nan, np.float32)
            have_lo, have_hi = max(lo, self._first), min(hi, end)
            frames[:, have_lo - lo : have_hi - lo] = self._base[
                :, have_lo - self._first : have_hi - self._first
            ]
        self._next = int(centres[-1]) + DECISION_STRIDE
        keep_from = max(self._first, self._next - self.context)
        self._base = self._base[:, keep_from - self._first :].copy()
        self._first = keep_from
        return Decisions(features, level, frames)


def decisions_of(y: np.ndarray, frames: bool = False) -> Decisions:
    """The `Decisions` of a whole mono 16 kHz signal `y (n,)`, without the channel axis: a
    stream's stretches joined (consecutive stretches share `2 * CONV_HALF - 1` frames)."""
    stream = FrameFeatureStream(frames)
    parts = [p for p in (stream.push(y[None, :]), stream.finish()) if p.features.shape[1]]
    joined = None
    if frames:
        joined = np.concatenate(
            [parts[0].frames] + [p.frames[:, 2 * CONV_HALF - 1 :] for p in parts[1:]], axis=1
        )[0]
    return Decisions(
        np.concatenate([p.features for p in parts], axis=1)[0],
        np.concatenate([p.level for p in parts], axis=1)[0],
        joined,
    )


__all__ = [
    "CLASSES",
    "CONV_HALF",
    "DECISION_SECONDS",
    "FRAME_SECONDS",
    "N_FEATURES",
    "SAMPLE_RATE",
    "WEIGHTS_PATH",
    "ConvNet",
    "Decisions",
    "FrameClassifier",
    "FrameFeatureStream",
    "base_features",
    "conv_inputs",
    "decisions_of",
    "load_classifier",
    "window_statistics",
]
