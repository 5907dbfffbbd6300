"""`chroma`: a chromagram per frame, equal to `librosa.feature.chroma_stft`.

With `tuning = none` (librosa's default) the tuning is estimated from the whole file, as librosa
does, before any chroma can be computed: the stream keeps each block's power spectrum in a
temporary file (memory stays bounded; disk use is 4 × (n_fft/2 + 1) bytes per frame, ~640 MB per
hour of audio at the defaults) and the spectral peaks that the estimate needs (read back a block
at a time: the median magnitude is found in two passes), and writes every row at the end of the
file. A fixed `tuning` streams rows block by block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.dsp import frame, stft_window
from audiokit.dsp.chroma import chroma_filterbank, normalize_frames, spectral_peaks, tuning_from_peak_chunks
from audiokit.dsp.spectrum import power_spectrum
from audiokit.extractors.base import param, register, vector_type
from audiokit.extractors.frames import FrameExtractor, FrameStream, _PeakFloorSpool
from audiokit.extractors.mel import StftParams


@dataclass(frozen=True)
class ChromaParams(StftParams):
    n_chroma: int = param(12, "chroma bins per octave", min=1, max=120)
    tuning: float | None = param(
        None, "deviation from A440 in fractions of a chroma bin; none = estimate it from the file", min=-0.5, max=0.5
    )
    norm: float | None = param(math.inf, "per-frame normalisation: inf (max), 1, 2 or none", choices=(math.inf, 1.0, 2.0, None))
    ctroct: float = param(5.0, "centre of the octave weighting, octaves above C0", min=0, max=12)
    octwidth: float | None = param(2.0, "width of the octave weighting, octaves; none = flat", above=0, max=100)
    base_c: bool = param(True, "chroma bins start at C (else A)")


@register
class Chroma(FrameExtractor):
    name = "chroma"
    table = "chroma"
    description = "chromagram from the power spectrum, equal to librosa.feature.chroma_stft"
    Params = ChromaParams

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        p = params
        self.frame_length = p.n_fft
        self.hop_length = p.hop_length
        self.center = p.center
        self.pad_modes = (p.pad_mode,)
        self.window = stft_window(p.n_fft, p.win_length, p.window)
        self._filterbanks: dict[float, np.ndarray] = {}

    def feature_fields(self) -> list[pa.Field]:
        return [pa.field("chroma", vector_type(self.params.n_chroma))]

    def filterbank(self, tuning: float) -> np.ndarray:
        """`(bins, n_chroma)`, built once per tuning (an estimate takes one of 101 values)."""
        if tuning not in self._filterbanks:
            p = self.params
            bank = chroma_filterbank(
                sr=p.sr, n_fft=p.n_fft, n_chroma=p.n_chroma, tuning=tuning, ctroct=p.ctroct,
                octwidth=p.octwidth, base_c=p.base_c,
            )
            self._filterbanks[tuning] = np.ascontiguousarray(bank.T)
        return self._filterbanks[tuning]

    def power(self, segment: np.ndarray) -> np.ndarray:
        return power_spectrum(frame(segment, self.frame_length, self.hop_length), self.window)

    def chroma(self, power: np.ndarray, tuning: float) -> dict[str, np.ndarray]:
        # einsum, not BLAS: a row's sums must not depend on how many rows a block holds.
        raw = np.einsum("...tf,fc->...tc", power, self.filterbank(tuning))
        return {"chroma": normalize_frames(raw, self.params.norm)}

    def compute(self, segments: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.chroma(self.power(segments[0]), self.params.tuning)

    def start(self, channels: int, sample_rate: int) -> FrameStream:
        if self.params.tuning is not None:
            return FrameStream(self, channels, sample_rate)
        return _TuningStream(self, channels, sample_rate)


class _TuningStream(FrameStream):
    """Keeps power spectra and spectral peaks until the file's tuning is known."""

    def __init__(self, extractor: Chroma, channels: int, sample_rate: int):
        super().__init__(extractor, channels, sample_rate)
        self.spectra = _PeakFloorSpool()
        self.peak_pitch = _PeakFloorSpool()
        self.peak_magnitude = _PeakFloorSpool()

    def _emit(self, segments: list[np.ndarray]) -> list[pa.RecordBatch]:
        ext = self.extractor
        if segments[0].size == 0 or segments[0].shape[-1] < ext.frame_length:
            return []
        power = ext.power(segments[0])
        pitch, magnitude = spectral_peaks(power, sr=ext.params.sr, n_fft=ext.params.n_fft)
        self.spectra.add(power)
        self.peak_pitch.add(pitch)
        self.peak_magnitude.add(magnitude)
        return []

    def finish(self) -> Iterator[pa.RecordBatch]:
        yield from self._emit([f.finish() for f in self.framers])
        ext = self.extractor

        def peaks():  # one pass over the spooled peaks, a block's at a time
            return zip(self.peak_pitch.arrays(close=False), self.peak_magnitude.arrays(close=False))

        tuning = tuning_from_peak_chunks(peaks, bins_per_octave=ext.params.n_chroma)
        self.peak_pitch.close()
        self.peak_magnitude.close()
        for power in self.spectra.arrays():
            yield from self._out(ext.chroma(power, tuning))
        yield from self._rest()


__all__ = ["Chroma", "ChromaParams"]
