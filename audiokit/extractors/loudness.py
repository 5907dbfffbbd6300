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

_TRUE_PEAK_CHUNK = 64  # samples whose peak decides whether they are interpolated
_TRUE_PEAK_GROUP = 128  # stretches interpolated per matrix product (stays in cache)
COLUMNS = ("integrated_lufs", "lra_lu", "sample_peak_dbfs", "true_peak_dbtp")


@dataclass(frozen=True)
class LoudnessParams:
    pass


def _quarter_sums(weighted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Σ x² (float64) of each stretch edges[i]..edges[i+1] of `(channels, n)`: `(channels, k)`.
    Quarters of one length (the rate a multiple of 10 Hz) are rows of a reshape, summed
    pairwise along contiguous rows, so a quarter's sum does not depend on the block it came in."""
    squares = np.square(weighted, dtype=np.float64)
    lengths = np.diff(edges)
    if lengths.size and (lengths == lengths[0]).all():
        channels = squares.shape[0]
        return squares.reshape(channels, lengths.size, int(lengths[0])).sum(axis=-1)
    return np.add.reduceat(squares, edges[:-1], axis=1)


class LoudnessMeter:
    """BS.1770 meter over a stream of `(channels, n)` blocks at one rate.

    `push` K-weights the block (filter state carried over), adds the weighted energy of every
    quarter (100 ms) it completes and updates the sample and true peaks; the samples of an
    unfinished quarter wait for the next block, so every quarter's sum is taken over the same
    contiguous samples whatever the block sizes: blocks give the same figures as the whole file.
    """

    def __init__(self, channels: int, sample_rate: int):
        from scipy.signal import sosfilt

        self._sosfilt = sosfilt
        self.channels = channels
        self.sample_rate = sample_rate
        self.sos = k_weighting_sos(sample_rate).astype(np.float32)
        self.weights = channel_weights(channels)
        self._k_state = np.zeros((self.sos.shape[0], channels, 2), dtype=np.float32)
        self._pending = np.zeros((channels, 0), dtype=np.float32)  # K-weighted samples of the unfinished quarter
        self._energies: list[np.ndarray] = []
        self.quarters = 0  # complete quarters so far
        self.samples = 0
        self.sample_peak = 0.0
        self.factor = oversampling_factor(sample_rate)
        self.phases = true_peak_filter(self.factor).astype(np.float32) if self.factor > 1 else None
        taps = 0 if self.phases is None else self.phases.shape[1]
        self._tp_history = np.zeros((channels, max(taps - 1, 0)), dtype=np.float32)  # last inputs
        self._tp_gain_bound = 0.0 if self.phases is None else float(np.abs(self.phases).sum(axis=1).max())
        # windows (oldest sample first) @ kernel → one column per phase
        self._tp_kernel = None if self.phases is None else np.ascontiguousarray(self.phases[:, ::-1].T)
        self.true_peak = 0.0

    def push(self, block: np.ndarray) -> None:
        if block.shape[1] == 0:
            return
        block = np.asarray(block, dtype=np.float32)
        self.samples += block.shape[1]
        self.sample_peak = max(self.sample_peak, self._true_peak(block))
        # float32 K-weighting: within 0.001 LU of float64 on real recordings, half the time
        weighted, self._k_state = self._sosfilt(self.sos, block, axis=-1, zi=self._k_state)
        self._add_quarters(weighted)

    def _add_quarters(self, weighted: np.ndarray) -> None:
        """Energies of the quarters that end in this block. A quarter that began in an earlier
        block is summed from its own small array (the held samples and this block's first
        ones); the others from slices of the block; the same reduction either way."""
        rate, count = self.sample_rate, weighted.shape[1]
        start = self.quarters * rate // 10 + self._pending.shape[1]  # sample index of weighted[:, 0]
        complete = ((start + count) * 10) // rate - self.quarters
        if complete <= 0:
            self._pending = np.concatenate([self._pending, weighted], axis=1)
            return
        edges = quarter_boundaries(rate, self.quarters + complete)[self.quarters :] - start  # in `weighted`
        sums = []
        if self._pending.shape[1]:
            head = np.concatenate([self._pending, weighted[:, : edges[1]]], axis=1)
            sums.append(_quarter_sums(head, np.array([0, head.shape[1]])))
            edges = edges[1:]
        if edges.size > 1:
            sums.append(_quarter_sums(weighted[:, edges[0] : edges[-1]], edges - edges[0]))
        self._energies.append(self.weights @ np.concatenate(sums, axis=1))
        self.quarters += complete
        self._pending = np.array(weighted[:, edges[-1] :], copy=True)

    def _true_peak(self, block: np.ndarray) -> float:
        """Raise the true peak with this block; returns the block's sample peak."""
        if self.phases is None:
            peak = float(np.abs(block).max()) if block.size else 0.0
            self.true_peak = max(self.true_peak, peak)
            return peak
        history = self._tp_history.shape[1]
        signal = np.concatenate([self._tp_history, block], axis=1)
        self._tp_history = np.array(signal[:, signal.shape[1] - history :], copy=True)
        # Each interpolated sample is a weighted sum of `taps` inputs, so a stretch whose inputs
        # all lie below true_peak / max Σ|h| cannot raise the true peak. Stretches of
        # _TRUE_PEAK_CHUNK samples are interpolated only if they could, the loudest first (it
        # raises the bar for the others); the result is the same as interpolating everything.
        count = block.shape[1]
        magnitude = np.abs(block[0])
        for channel in block[1:]:
            np.maximum(magnitude, np.abs(channel), out=magnitude)
        whole = count // _TRUE_PEAK_CHUNK
        own = magnitude[: whole * _TRUE_PEAK_CHUNK].reshape(whole, _TRUE_PEAK_CHUNK).max(axis=1)
        if count > whole * _TRUE_PEAK_CHUNK:
            own = np.append(own, magnitude[whole * _TRUE_PEAK_CHUNK :].max())
        sample_peak = float(own.max())
        before = np.empty_like(own)  # the inputs a stretch's first windows reach back to
        before[0] = float(np.abs(signal[:, :history]).max())
        before[1:] = own[:-1]
        reach = np.maximum(own, before)
        bound = self._tp_gain_bound * (1 + 1e-6)
        loudest = int(np.argmax(reach))
        if reach[loudest] * bound > self.true_peak:
            self._interpolate(signal, np.array([loudest]), count)
        todo = np.flatnonzero(reach * bound > self.true_peak)
        todo = todo[todo != loudest]
        for first in range(0, todo.size, _TRUE_PEAK_GROUP):
            self._interpolate(signal, todo[first : first + _TRUE_PEAK_GROUP], count)
        return sample_peak

    def _interpolate(self, signal: np.ndarray, chunks: np.ndarray, count: int) -> None:
        """Raise the true peak with the interpolated samples of the given stretches of the
        block (`signal` holds `history` older samples first; the block has `count`)."""
        history = self._tp_history.shape[1]
        starts = chunks * _TRUE_PEAK_CHUNK
        offsets = np.arange(_TRUE_PEAK_CHUNK + history)
        index = np.minimum(starts[:, None] + offsets[None, :], signal.shape[1] - 1)
        stretches = signal[:, index]  # (channels, stretches, chunk + history)
        windows = np.lib.stride_tricks.sliding_window_view(stretches, history + 1, axis=-1)
        values = windows @ self._tp_kernel  # (channels, stretches, chunk, phases)
        inside = (starts[:, None] + offsets[None, :_TRUE_PEAK_CHUNK]) < count  # the last stretch may be short
        values = np.abs(values) * inside[None, :, :, None]
        self.true_peak = max(self.true_peak, float(values.max()))

    def finish(self) -> None:
        """The tail of the interpolation filter (the signal's end is followed by silence)."""
        if self.phases is not None and self.samples:
            self._true_peak(np.zeros((self.channels, self.phases.shape[1] - 1), dtype=np.float32))

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
    preload = ("scipy.signal",)

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
    preload = ("scipy.signal",)

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
