"""`loudness`: BS.1770-4 integrated loudness, EBU loudness range and peaks, one row per file.

It measures the file's own channels at its own rate (`native_channels`: the pipeline gives it
the decoded channels whatever `audio.channels` says, since BS.1770 weighs and sums channels
rather than measuring a mix). A stream keeps two numbers per 100 ms (the K-weighted energy of
each quarter of a gating block), about 6 MB per ten hours, never the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.dsp.loudness import (
    QUARTERS_PER_BLOCK,
    QUARTERS_PER_SHORT_TERM,
    channel_weights,
    energy_to_lufs,
    integrated_loudness,
    k_weighting_sos,
    loudness_range,
    oversampling_factor,
    quarter_boundaries,
    to_db,
    true_peak_filter,
)
from audiokit.extractors.base import Extractor, key_columns, register
from audiokit.store.arrays import numeric

COLUMNS = ("integrated_lufs", "lra_lu", "sample_peak_dbfs", "true_peak_dbtp")


@dataclass(frozen=True)
class LoudnessParams:
    pass


class LoudnessMeter:
    """BS.1770 meter over a stream of `(channels, n)` blocks at one rate.

    `push` K-weights the block, adds the weighted energy of every quarter (100 ms) it completes
    and updates the sample and true peaks (`audiokit.dsp.loudness_kernels`; what is unfinished
    carries over, so blocks give the same figures as the whole file).
    """

    def __init__(self, channels: int, sample_rate: int):
        from audiokit.dsp.loudness_kernels import MeterPass, TruePeak

        self.channels = channels
        self.sample_rate = sample_rate
        self.weights = channel_weights(channels)
        self._pass = MeterPass(k_weighting_sos(sample_rate), channels, sample_rate)
        self._energies: list[np.ndarray] = []
        self.sample_peak = 0.0
        factor = oversampling_factor(sample_rate)
        self._true_peak = TruePeak(true_peak_filter(factor), channels) if factor > 1 else None

    def push(self, block: np.ndarray) -> None:
        if block.shape[1] == 0:
            return
        block = np.ascontiguousarray(block, dtype=np.float32)
        energies, chunk_peaks = self._pass.push(block)
        self._energies.append(self.weights @ energies)
        self.sample_peak = max(self.sample_peak, float(chunk_peaks.max()))
        if self._true_peak is not None:
            self._true_peak.push(block, chunk_peaks)

    @property
    def quarters(self) -> int:
        """Complete quarters so far."""
        return self._pass.quarters

    @property
    def true_peak(self) -> float:
        return self.sample_peak if self._true_peak is None else self._true_peak.peak

    def finish(self) -> None:
        if self._true_peak is not None and self._pass.position:
            self._true_peak.finish()

    def quarter_energies(self) -> np.ndarray:
        return np.concatenate(self._energies) if self._energies else np.zeros(0)

    def quarter_lengths(self) -> np.ndarray:
        return np.diff(quarter_boundaries(self.sample_rate, self.quarters))

    def summary(self) -> dict[str, float | None]:
        energies, lengths = self.quarter_energies(), self.quarter_lengths()
        return {
            "integrated_lufs": integrated_loudness(energies, lengths),
            "lra_lu": loudness_range(energies, lengths),
            "sample_peak_dbfs": to_db(self.sample_peak),
            # The 48-tap filter's outputs fall between the input samples (offsets of 1/8, 3/8, …),
            # so a crest on a sample could read up to 0.17 dB low without the samples themselves.
            "true_peak_dbtp": to_db(max(self.true_peak, self.sample_peak)),
        }


@register
class Loudness(Extractor):
    name = "loudness"
    table = "loudness"
    description = (
        "integrated loudness (ITU-R BS.1770-4), loudness range (EBU Tech 3342), sample and true peak "
        "per file, on the native channels"
    )
    Params = LoudnessParams
    native_channels = True
    preload = ("audiokit.dsp.loudness_kernels",)

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [pa.field("channels", pa.int32(), nullable=False)]
            + [pa.field(name, pa.float64()) for name in COLUMNS]
        )

    def start(self, channels: int, sample_rate: int) -> _LoudnessStream:
        return _LoudnessStream(self, channels, sample_rate)


class _LoudnessStream:
    def __init__(self, extractor: Loudness, channels: int, sample_rate: int):
        self.meter = LoudnessMeter(channels, sample_rate)
        self.fields = [f for f in extractor.schema() if f.name != "file_id"]

    def push(self, block: np.ndarray) -> list[pa.RecordBatch]:
        self.meter.push(block)
        return []

    def finish(self) -> list[pa.RecordBatch]:
        self.meter.finish()
        figures = self.meter.summary()
        arrays = [numeric(np.zeros(1, dtype=np.int32)), numeric(np.array([self.meter.channels], dtype=np.int32))]
        for name in COLUMNS:
            value = figures[name]
            valid = np.array([value is not None])
            arrays.append(numeric(np.array([np.nan if value is None else value]), valid=valid))
        return [pa.RecordBatch.from_arrays(arrays, schema=pa.schema(self.fields))]


@dataclass(frozen=True)
class LoudnessFramesParams:
    pass


_FRAME_ROWS_PER_BATCH = 36000  # an hour of rows


@register
class LoudnessFrames(Extractor):
    """Momentary (400 ms) and short-term (3 s) loudness every 100 ms, on the native channels.

    Row k is centred at k × 100 ms, as frame tables are: its windows are the quarters around
    that time, with silence before the file's start and after its last whole quarter (as
    librosa's `center=True` pads), divided by the windows' full length. Digital silence is -inf.
    """

    name = "loudness_frames"
    table = "loudness_frames"
    description = "momentary (400 ms) and short-term (3 s) loudness every 100 ms (BS.1770-4), native channels"
    Params = LoudnessFramesParams
    native_channels = True
    preload = ("audiokit.dsp.loudness_kernels",)

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [pa.field("frame", pa.int64(), nullable=False), pa.field("time_s", pa.float64(), nullable=False)]
            + [pa.field("momentary_lufs", pa.float32()), pa.field("short_term_lufs", pa.float32())]
        )

    def start(self, channels: int, sample_rate: int) -> _LoudnessFramesStream:
        return _LoudnessFramesStream(self, channels, sample_rate)


class _LoudnessFramesStream(_LoudnessStream):
    def __init__(self, extractor: LoudnessFrames, channels: int, sample_rate: int):
        super().__init__(extractor, channels, sample_rate)

    def finish(self) -> list[pa.RecordBatch]:
        energies = self.meter.quarter_energies()
        count = energies.size
        rate = self.meter.sample_rate
        cumulative = np.concatenate([[0.0], np.cumsum(energies)])
        batches = []
        for first in range(0, count, _FRAME_ROWS_PER_BATCH):
            frames = np.arange(first, min(count, first + _FRAME_ROWS_PER_BATCH), dtype=np.int64)
            columns = []
            for quarters in (QUARTERS_PER_BLOCK, QUARTERS_PER_SHORT_TERM):
                low = np.clip(frames - quarters // 2, 0, count)
                high = np.clip(frames + quarters - quarters // 2, 0, count)
                mean_square = (cumulative[high] - cumulative[low]) / (quarters * rate / 10.0)
                columns.append(energy_to_lufs(np.maximum(mean_square, 0.0)).astype(np.float32))
            arrays = [
                numeric(np.zeros(frames.size, dtype=np.int32)),
                numeric(frames),
                numeric(frames * 0.1),
                numeric(columns[0]),
                numeric(columns[1]),
            ]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=pa.schema(self.fields)))
        return batches


__all__ = [
    "COLUMNS", "Loudness", "LoudnessFrames", "LoudnessMeter", "energy_to_lufs", "QUARTERS_PER_BLOCK",
    "QUARTERS_PER_SHORT_TERM",
]
