"""Delta features (`librosa.feature.delta`: a Savitzky-Golay derivative along time), whole or
as a stream of frames that gives the same rows whatever the block sizes."""

from __future__ import annotations

import math

import numpy as np

DELTA_MODES = ("interp", "nearest", "mirror", "constant")


def delta_weights(width: int, order: int) -> np.ndarray:
    """Weights over frames t-h..t+h (h = width // 2) of the order-`order` derivative of the
    least-squares polynomial of degree `order` through them, at t (savgol_coeffs, use='dot')."""
    positions = np.arange(width, dtype=np.float64) - width // 2
    return _derivative_rows(positions, order, np.array([0.0]))[0]


def _derivative_rows(positions: np.ndarray, order: int, at: np.ndarray) -> np.ndarray:
    """Rows mapping values at `positions` to the order-th derivative, at `at`, of their
    least-squares polynomial of degree `order`."""
    vandermonde = positions[:, None] ** np.arange(order + 1)[None, :]
    fit = np.linalg.pinv(vandermonde)  # coefficients = fit @ values
    powers = np.arange(order + 1)
    factor = np.array([math.perm(k, order) if k >= order else 0 for k in powers], dtype=np.float64)
    exponents = np.maximum(powers - order, 0)
    derivative = factor[None, :] * at[:, None] ** exponents[None, :]
    return derivative @ fit


def edge_weights(width: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """`mode="interp"`: the first and last h frames take the derivative of the polynomial fitted
    to the first (last) `width` frames, at their own positions: two `(h, width)` matrices."""
    h = width // 2
    positions = np.arange(width, dtype=np.float64)
    start = _derivative_rows(positions, order, positions[:h])
    end = _derivative_rows(positions, order, positions[width - h :])
    return start, end


class StreamDelta:
    """`librosa.feature.delta(x, width, order, mode)` along the frame axis of a stream.

    `push(frames [shape=(C, T, D)])` returns the deltas of the frames whose neighbourhood is
    complete (h = width // 2 frames behind the input); `finish()` returns the rest.
    Concatenated, they equal the whole-signal call. A signal of fewer than `width` frames
    (which librosa refuses with mode `interp`) gives NaN in every mode.
    """

    def __init__(self, width: int, order: int, mode: str = "interp"):
        if width < 3 or width % 2 == 0:
            raise ValueError(f"width must be an odd integer >= 3, got {width}")
        if mode not in DELTA_MODES:
            raise ValueError(f"mode must be one of {DELTA_MODES}, got {mode!r}")
        self.width, self.order, self.mode = width, order, mode
        self.half = width // 2
        self.weights = delta_weights(width, order)
        self.start_weights, self.end_weights = edge_weights(width, order)
        self._buffer: np.ndarray | None = None  # frames from index `_buffer_start` on
        self._buffer_start = 0
        self._head: np.ndarray | None = None  # the first `width` frames (edge padding, interp)
        self.total = 0
        self.emitted = 0

    def push(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, dtype=np.float32)
        self._buffer = frames if self._buffer is None else np.concatenate([self._buffer, frames], axis=1)
        self.total += frames.shape[1]
        if self._buffer_start == 0:
            self._head = np.array(self._buffer[:, : self.width], copy=True)
        # Interior rows need h frames on either side; until `width` frames exist the signal
        # may still turn out too short for a delta at all.
        ready = self.total - self.half if self.total >= self.width else self.emitted
        return self._emit(max(ready, self.emitted), final=False)

    def finish(self) -> np.ndarray:
        if self._buffer is None:
            return np.zeros((0, 0, 0), dtype=np.float32)
        return self._emit(self.total, final=True)

    def _emit(self, stop: int, *, final: bool) -> np.ndarray:
        start = self.emitted
        channels, _, dims = self._buffer.shape
        if stop <= start:
            return np.zeros((channels, 0, dims), dtype=np.float32)
        h = self.half
        if self.total < self.width:
            out = np.full((channels, stop - start, dims), np.nan, dtype=np.float32)
        else:
            context = self._context(start - h, stop + h, final)  # (C, stop - start + 2h, D)
            windows = np.lib.stride_tricks.sliding_window_view(context, self.width, axis=1)  # (C, n, D, width)
            out = windows.astype(np.float64) @ self.weights
            if self.mode == "interp":
                head = self._head.astype(np.float64)
                for t in range(start, min(stop, h)):
                    out[:, t - start] = np.einsum("w,cwd->cd", self.start_weights[t], head)
                if final:
                    tail = self._frames(self.total - self.width, self.total).astype(np.float64)
                    for t in range(max(start, self.total - h), stop):
                        out[:, t - start] = np.einsum("w,cwd->cd", self.end_weights[t - (self.total - h)], tail)
            out = out.astype(np.float32)
        self.emitted = stop
        keep_from = max(0, self.emitted - self.width)
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return out

    def _frames(self, start: int, stop: int) -> np.ndarray:
        return self._buffer[:, start - self._buffer_start : stop - self._buffer_start]

    def _context(self, start: int, stop: int, final: bool) -> np.ndarray:
        """Frames `start..stop` with the mode's padding outside the signal (zeros for interp,
        whose edge frames are replaced afterwards)."""
        inner = self._frames(max(start, 0), min(stop, self.total))
        left, right = max(0, -start), max(0, stop - self.total) if final else 0
        if not left and not right:
            return inner
        parts = []
        if left:
            parts.append(self._pad(self._head, left, at_start=True))
        parts.append(inner)
        if right:
            parts.append(self._pad(self._frames(max(0, self.total - self.width), self.total), right, at_start=False))
        return np.concatenate(parts, axis=1)

    def _pad(self, edge: np.ndarray, count: int, *, at_start: bool) -> np.ndarray:
        channels, _, dims = edge.shape
        if self.mode in ("constant", "interp"):
            return np.zeros((channels, count, dims), dtype=np.float32)
        if self.mode == "nearest":
            frame = edge[:, :1] if at_start else edge[:, -1:]
            return np.repeat(frame, count, axis=1)
        # mirror: d c b | a b c d | c b a (the edge frame itself is not repeated)
        if at_start:
            return edge[:, 1 : count + 1][:, ::-1]
        return edge[:, -count - 1 : -1][:, ::-1]


def delta(x: np.ndarray, *, width: int = 9, order: int = 1, mode: str = "interp") -> np.ndarray:
    """The whole-signal call: `x [shape=(C, T, D)]` → deltas of the same shape."""
    stream = StreamDelta(width, order, mode)
    return np.concatenate([stream.push(x), stream.finish()], axis=1)


__all__ = ["DELTA_MODES", "StreamDelta", "delta", "delta_weights", "edge_weights"]
