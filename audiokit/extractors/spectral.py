"""`spectral`: centroid, bandwidth, rolloff, flatness, zero-crossing rate and RMS per frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.dsp import (
    fft_frequencies,
    frame,
    frame_rms,
    frame_zcr,
    magnitude_spectrum,
    spectral_bandwidth,
    spectral_centroid,
    spectral_flatness,
    spectral_rolloff,
    stft_window,
)
from audiokit.extractors.base import param, register
from audiokit.extractors.frames import FrameExtractor
from audiokit.extractors.mel import StftParams

COLUMNS = ("centroid", "bandwidth", "rolloff", "flatness", "zcr", "rms")


@dataclass(frozen=True)
class SpectralParams(StftParams):
    roll_percent: float = param(0.85, "rolloff: fraction of the magnitude below the rolloff frequency", above=0, below=1)
    bandwidth_p: float = param(2.0, "bandwidth: order p of the deviation", above=0, max=16)
    flatness_power: float = param(2.0, "flatness: exponent of the magnitude spectrum", above=0, max=8)
    flatness_amin: float = param(1e-10, "flatness: floor of the (power) spectrum", above=0)
    zcr_threshold: float = param(1e-10, "zcr: |samples| at or below this count as zero", min=0, below=1)


@register
class Spectral(FrameExtractor):
    """librosa's spectral_* on the magnitude STFT; rms and zcr with frame_length = n_fft.

    Like librosa, zcr pads the signal's edges by repetition, the others with `pad_mode`.
    """

    name = "spectral"
    table = "spectral"
    description = "spectral centroid/bandwidth/rolloff/flatness, zero-crossing rate and RMS per frame"
    Params = SpectralParams
    pad_modes = ("constant", "edge")

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.frame_length = params.n_fft
        self.hop_length = params.hop_length
        self.center = params.center
        self.pad_modes = (params.pad_mode, "edge")
        self.window = stft_window(params.n_fft, params.win_length, params.window)
        self.freqs = fft_frequencies(sr=params.sr, n_fft=params.n_fft)

    def feature_fields(self) -> list[pa.Field]:
        return [pa.field(name, pa.float32()) for name in COLUMNS]

    def _build_torch_module(self):
        from audiokit.dsp.torch_ops import SpectralFeatures

        p = self.params
        return SpectralFeatures(
            window=self.window, freqs=self.freqs, roll_percent=p.roll_percent, bandwidth_p=p.bandwidth_p,
            flatness_power=p.flatness_power, flatness_amin=p.flatness_amin, zcr_threshold=p.zcr_threshold,
        )

    def torch_columns(self, module, frame_sets: list) -> dict:
        return module(frame_sets[0], frame_sets[1])

    def compute(self, segments: list[np.ndarray]) -> dict[str, np.ndarray]:
        p = self.params
        frames = frame(segments[0], self.frame_length, self.hop_length)
        magnitude = magnitude_spectrum(frames, self.window)
        centroid = spectral_centroid(magnitude, self.freqs)
        return {
            "centroid": centroid,
            "bandwidth": spectral_bandwidth(magnitude, self.freqs, centroid, p=p.bandwidth_p),
            "rolloff": spectral_rolloff(magnitude, self.freqs, roll_percent=p.roll_percent),
            "flatness": spectral_flatness(magnitude, power=p.flatness_power, amin=p.flatness_amin),
            "zcr": frame_zcr(frame(segments[1], self.frame_length, self.hop_length), threshold=p.zcr_threshold),
            "rms": frame_rms(frames),
        }
