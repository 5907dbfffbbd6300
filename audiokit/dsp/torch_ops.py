"""Torch twins of the DSP core, for the `torch` backend (CPU or CUDA).

Same conventions as the numpy functions in `audiokit.dsp`: time on axis -2 (`(..., frames,
bins)`), float32, librosa's parameter meanings. The maths lives in plain functions; the small
`nn.Module`s below hold an extractor's window, mel filterbank and DCT matrix as buffers (so
`.to(device)` moves them) and are built *from the numpy arrays the numpy path uses*: both
backends share one source of truth for every matrix.

Every op works on a flat batch of frames `(N, frame_length)` as well as on `(channels, T, L)`,
so frames of many files can be packed into one tensor (see `audiokit.extractors.batched`).

This module imports torch at import time; import it only when the torch backend is asked for.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def magnitude_spectrum(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    # abs() (a hypot), like numpy: sqrt(re² + im²) would underflow to 0 for magnitudes < 1e-19.
    return torch.fft.rfft(frames * window, dim=-1).abs()


def frame(y: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """`y [shape=(..., n)]` → view `(..., n_frames, frame_length)` (no copy), like `dsp.frame`."""
    if y.shape[-1] < frame_length:
        return y.new_empty(y.shape[:-1] + (0, frame_length))
    return y.unfold(-1, frame_length, hop_length)


def power_spectrum(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """`|rfft|²` as the numpy core computes it (the magnitude squared)."""
    return magnitude_spectrum(frames, window).square_()


def power_to_db(S: torch.Tensor, *, ref: float = 1.0, amin: float = 1e-10) -> torch.Tensor:
    """`10·log10(max(amin, S) / ref)` without a floor (the per-file floor is `apply_floor`)."""
    return 10.0 * torch.log10(torch.clamp(S, min=amin)) - 10.0 * float(np.log10(max(amin, ref)))


def segment_max(values: torch.Tensor, segment_ids: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Maximum of `values [shape=(N, ...)]` per segment id `(N,)` → `(n_segments,)`; -inf if empty."""
    per_row = (
        values.reshape(values.shape[0], -1).amax(dim=1) if values.numel() else values.new_empty(0)
    )
    out = torch.full((n_segments,), float("-inf"), dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, segment_ids, per_row, reduce="amax", include_self=True)


def apply_floor(db: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """librosa's `top_db`: `max(db, floor)` with one floor per row `(N,)` of `db (N, bins)`."""
    return torch.maximum(db, floor[:, None])


def _normalize_l1(S: torch.Tensor) -> torch.Tensor:
    total = S.sum(dim=-1, keepdim=True)
    tiny = torch.finfo(S.dtype).tiny
    return S / torch.where(total < tiny, torch.ones_like(total), total)


def spectral_centroid(
    S: torch.Tensor, freqs: torch.Tensor, *, normalized: torch.Tensor | None = None
) -> torch.Tensor:
    """`normalized` = `S` scaled to unit sum per frame, when the caller already has it."""
    return (_normalize_l1(S) if normalized is None else normalized) @ freqs


def spectral_bandwidth(
    S: torch.Tensor,
    freqs: torch.Tensor,
    centroid: torch.Tensor,
    *,
    p: float = 2.0,
    normalized: torch.Tensor | None = None,
) -> torch.Tensor:
    deviation = (freqs - centroid[..., None]).abs_()
    deviation = deviation.square_() if p == 2.0 else deviation.pow_(p)
    weights = _normalize_l1(S) if normalized is None else normalized
    return torch.sum(weights * deviation, dim=-1) ** (1.0 / p)


def spectral_rolloff(
    S: torch.Tensor, freqs: torch.Tensor, *, roll_percent: float = 0.85
) -> torch.Tensor:
    cumulative = torch.cumsum(S, dim=-1)
    threshold = roll_percent * cumulative[..., -1:]
    # First bin reaching the threshold (argmax of a bool picks the first True; all False → 0).
    first = torch.argmax((cumulative >= threshold).to(torch.uint8), dim=-1)
    return freqs[first]


def spectral_flatness(S: torch.Tensor, *, power: float = 2.0, amin: float = 1e-10) -> torch.Tensor:
    S_thresh = torch.clamp(S**power, min=amin)
    gmean = torch.exp(torch.mean(torch.log(S_thresh), dim=-1))
    return gmean / torch.mean(S_thresh, dim=-1)


def frame_rms(frames: torch.Tensor) -> torch.Tensor:
    # One fused pass instead of a squared copy of every frame.
    return torch.linalg.vector_norm(frames, dim=-1) / float(np.sqrt(frames.shape[-1]))


def _negative(x: torch.Tensor, threshold: float) -> torch.Tensor:
    # "sign bit set and |x| > threshold" is "x < -threshold" for threshold >= 0.
    return x < -threshold if threshold >= 0 else torch.signbit(x) & (x.abs() > threshold)


def frame_zcr(frames: torch.Tensor, *, threshold: float = 1e-10) -> torch.Tensor:
    negative = _negative(frames, threshold)
    crossings = negative[..., 1:] != negative[..., :-1]
    return crossings.sum(dim=-1, dtype=torch.float32) / frames.shape[-1]


def strided_zcr(
    signal: torch.Tensor, starts: torch.Tensor, frame_length: int, *, threshold: float = 1e-10
) -> torch.Tensor:
    """`frame_zcr` of the frames `signal[s : s + frame_length]` for each `s` in `starts`, from a
    prefix sum of sign changes instead of framed copies (integer counts: exactly equal)."""
    negative = _negative(signal, threshold)
    prefix = torch.zeros(signal.shape[0], dtype=torch.int32, device=signal.device)
    torch.cumsum(negative[1:] != negative[:-1], dim=0, dtype=torch.int32, out=prefix[1:])
    crossings = prefix[starts + (frame_length - 1)] - prefix[starts]
    return crossings.to(torch.float32) / frame_length


def _buffer(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class MelFeatures(nn.Module):
    """Frames → mel dB (unfloored when the floor waits for the file's peak) → mfcc or logmel.

    `forward(frames)` returns the dB values `(N, n_mels)`; `finalize(db)` the feature columns.
    """

    def __init__(
        self,
        *,
        window: np.ndarray,
        mel_basis_t: np.ndarray,
        power: float,
        ref: float,
        amin: float,
        column: str,
        dct_t: np.ndarray | None = None,
    ):
        super().__init__()
        self.register_buffer("window", _buffer(window))
        self.register_buffer("mel_basis_t", _buffer(mel_basis_t))
        self.register_buffer("dct_t", _buffer(dct_t) if dct_t is not None else None)
        self.power = power
        self.ref = ref
        self.amin = amin
        self.column = column

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        spectrum = power_spectrum(frames, self.window)
        if self.power != 2.0:
            spectrum = spectrum ** (self.power / 2.0)
        return power_to_db(spectrum @ self.mel_basis_t, ref=self.ref, amin=self.amin)

    def finalize(self, db: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.column: db if self.dct_t is None else db @ self.dct_t}


class SpectralFeatures(nn.Module):
    """Frames (and the edge-padded frames zcr uses) → centroid … rms, one value per frame."""

    def __init__(
        self,
        *,
        window: np.ndarray,
        freqs: np.ndarray,
        roll_percent: float,
        bandwidth_p: float,
        flatness_power: float,
        flatness_amin: float,
        zcr_threshold: float,
    ):
        super().__init__()
        self.register_buffer("window", _buffer(window))
        self.register_buffer("freqs", _buffer(freqs))
        self.roll_percent = roll_percent
        self.bandwidth_p = bandwidth_p
        self.flatness_power = flatness_power
        self.flatness_amin = flatness_amin
        self.zcr_threshold = zcr_threshold

    def forward(
        self,
        frames: torch.Tensor,
        zcr_frames: torch.Tensor | None = None,
        *,
        zcr: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`zcr_frames`: the frames zcr counts on (edge padded); or `zcr`, already counted."""
        if zcr is None:
            zcr = frame_zcr(zcr_frames, threshold=self.zcr_threshold)
        magnitude = magnitude_spectrum(frames, self.window)
        normalized = _normalize_l1(magnitude)
        centroid = spectral_centroid(magnitude, self.freqs, normalized=normalized)
        return {
            "centroid": centroid,
            "bandwidth": spectral_bandwidth(
                magnitude, self.freqs, centroid, p=self.bandwidth_p, normalized=normalized
            ),
            "rolloff": spectral_rolloff(magnitude, self.freqs, roll_percent=self.roll_percent),
            "flatness": spectral_flatness(
                magnitude, power=self.flatness_power, amin=self.flatness_amin
            ),
            "zcr": zcr,
            "rms": frame_rms(frames),
        }


def resolve_device(device: str) -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`; `cuda` without one is a ValueError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)"
        )
    return device
