"""The loudness meter's per-sample loops, compiled with numba.

K-weighting is a recursion, sample after sample, so numpy cannot vectorise it; scipy's
`sosfilt`, squaring and summing took three passes and most of the meter's time. `MeterPass`
makes one: it filters in float64, adds each channel's squared output into its 100 ms quarter
and notes the peak of every `CHUNK` samples (what the true peak needs to know where to
interpolate). Channels go through in pairs: the two recursions are independent, so the core
runs one while the other waits on its last result (a mono file runs the pair with itself).
Filter states and the unfinished quarter's sum carry from block to block and sums are taken in
sample order, so any split of the signal into blocks gives the same floats.

Compiled when this module is imported (explicit signatures; numba caches the machine code on
disk), so worker processes forked after the import start with it.
"""

from __future__ import annotations

import numba
import numpy as np

CHUNK = 64  # samples whose peak decides whether they are interpolated for the true peak


@numba.njit(
    "int64(float32[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1], int64, int64, int64, float64[:, ::1],"
    " float32[::1])",
    cache=True,
    nogil=True,
)
def _meter_pass(block, sos, state, partial, position, quarter, sample_rate, energies, peaks):
    channels, count = block.shape
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    peaks[:] = 0.0
    done = 0
    for c in range(0, channels, 2):
        d = min(c + 1, channels - 1)
        p0, p1, p2, p3 = state[c, 0], state[c, 1], state[c, 2], state[c, 3]
        r0, r1, r2, r3 = state[d, 0], state[d, 1], state[d, 2], state[d, 3]
        sum_c, sum_d = partial[c], partial[d]
        q = quarter
        edge = (q + 1) * sample_rate // 10 - position  # where quarter q ends, in `block`
        k = 0
        for i in range(peaks.size):
            peak = peaks[i]
            for n in range(i * CHUNK, min((i + 1) * CHUNK, count)):
                if n == edge:
                    energies[c, k], energies[d, k] = sum_c, sum_d
                    sum_c, sum_d = 0.0, 0.0
                    k += 1
                    q += 1
                    edge = (q + 1) * sample_rate // 10 - position
                u, v = block[c, n], block[d, n]
                peak = max(peak, abs(u), abs(v))
                x, w = np.float64(u), np.float64(v)
                # Transposed direct form II: the pre-filter shelf, then the RLB high-pass.
                y, yw = b00 * x + p0, b00 * w + r0
                p0, r0 = b01 * x - a01 * y + p1, b01 * w - a01 * yw + r1
                p1, r1 = b02 * x - a02 * y, b02 * w - a02 * yw
                z, zw = b10 * y + p2, b10 * yw + r2
                p2, r2 = b11 * y - a11 * z + p3, b11 * yw - a11 * zw + r3
                p3, r3 = b12 * y - a12 * z, b12 * yw - a12 * zw
                sum_c += z * z
                sum_d += zw * zw
            peaks[i] = peak
        if count == edge:
            energies[c, k], energies[d, k] = sum_c, sum_d
            sum_c, sum_d = 0.0, 0.0
            k += 1
        state[c, 0], state[c, 1], state[c, 2], state[c, 3] = p0, p1, p2, p3
        state[d, 0], state[d, 1], state[d, 2], state[d, 3] = r0, r1, r2, r3
        partial[c], partial[d] = sum_c, sum_d
        done = k
    return done


class MeterPass:
    """K-weighted energy per channel of each quarter (100 ms: samples `k * sr // 10` up to
    `(k + 1) * sr // 10`) and the peak of every `CHUNK` samples, over a stream of
    `(channels, n)` float32 blocks."""

    def __init__(self, sos: np.ndarray, channels: int, sample_rate: int):
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.sample_rate = sample_rate
        self.state = np.zeros((channels, 4))
        self.partial = np.zeros(channels)  # sum so far of the quarter not yet complete
        self.position = 0  # samples pushed
        self.quarters = 0  # quarters complete

    def push(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `(channels, k)` energies of the quarters this block completes, and the peak
        over the channels of each `CHUNK` samples of the block (C-ordered float32)."""
        count = block.shape[1]
        room = count // max(1, self.sample_rate // 10) + 1  # at most this many quarters end here
        energies = np.empty((block.shape[0], room))
        peaks = np.empty(-(-count // CHUNK), dtype=np.float32)
        done = _meter_pass(
            block, self.sos, self.state, self.partial, self.position, self.quarters, self.sample_rate, energies, peaks
        )
        self.position += count
        self.quarters += done
        return energies[:, :done], peaks


@numba.njit(
    "float64(float32[:, ::1], float32[:, ::1], float64[:, ::1], int64[::1], float32[::1], float64, float64, int64)",
    cache=True,
    nogil=True,
)
def _interpolated_peak(history, block, phases, chunks, reach, bound, peak, chunk):
    channels, count = block.shape
    factor, taps = phases.shape
    held = history.shape[1]  # taps - 1 samples before block[:, 0]
    window = np.empty(held + chunk)  # a chunk's inputs, oldest first
    out = np.empty(chunk)
    for i in range(chunks.size):
        j = chunks[i]
        if reach[j] * bound <= peak:  # the bar rose while the louder chunks were done
            continue
        first = j * chunk
        size = min(chunk, count - first)
        for c in range(channels):
            for m in range(held + size):
                n = first - held + m
                window[m] = block[c, n] if n >= 0 else history[c, held + n]
            for p in range(factor):
                out[:size] = 0.0
                for k in range(taps):  # output n: sum over k of phases[p, k] * input n - k
                    h = phases[p, k]
                    for n in range(size):
                        out[n] += h * window[held + n - k]
                for n in range(size):
                    peak = max(peak, abs(out[n]))
    return peak


class TruePeak:
    """The largest |sample| of a signal oversampled by the polyphase filter `phases`
    (`(factor, taps)`, row p giving the samples at offset p/factor), over a stream of
    `(channels, n)` float32 blocks; the signal is silent before its first sample.

    Each interpolated sample is a weighted sum of `taps` inputs, so a stretch whose inputs all
    lie below peak / max Σ|h| cannot raise the peak. Stretches of `CHUNK` samples are
    interpolated only if they could, the loudest first (it raises the bar for the others): the
    result is the same as interpolating everything.
    """

    def __init__(self, phases: np.ndarray, channels: int):
        self.phases = np.ascontiguousarray(phases, dtype=np.float64)
        taps = phases.shape[1]
        self.bound = float(np.abs(phases).sum(axis=1).max()) * (1 + 1e-6)
        self.history = np.zeros((channels, taps - 1), dtype=np.float32)  # the inputs before the block
        self.peak = 0.0

    def push(self, block: np.ndarray, own: np.ndarray) -> None:
        """Raise the peak with this block (`(channels, n)` float32, C order), given the peak
        of each of its `CHUNK`-sample stretches (`MeterPass.push`)."""
        count = block.shape[1]
        reach = np.maximum(own, np.concatenate([[np.abs(self.history).max(initial=0.0)], own[:-1]]).astype(np.float32))
        could = np.flatnonzero(reach * self.bound > self.peak)
        if could.size:
            order = could[np.argsort(-reach[could], kind="stable")]
            self.peak = _interpolated_peak(self.history, block, self.phases, order, reach, self.bound, self.peak, CHUNK)
        held = self.history.shape[1]
        if count >= held:
            self.history = np.array(block[:, count - held :], copy=True)
        else:
            self.history = np.ascontiguousarray(np.concatenate([self.history, block], axis=1)[:, -held:])

    def finish(self) -> None:
        """The tail of the interpolation filter (the signal's end is followed by silence)."""
        tail = np.zeros_like(self.history)
        self.push(tail, np.zeros(-(-tail.shape[1] // CHUNK), dtype=np.float32))


__all__ = ["CHUNK", "MeterPass", "TruePeak"]
