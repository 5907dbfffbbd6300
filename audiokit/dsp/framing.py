"""Framing a signal, whole or as a stream of blocks, with librosa's `center` padding."""

from __future__ import annotations

import numpy as np

PAD_MODES = ("constant", "edge")


def n_frames(n_samples: int, frame_length: int, hop_length: int, center: bool = True) -> int:
    """Number of frames librosa produces for `n_samples` samples."""
    if center:
        n_samples += 2 * (frame_length // 2)
    if n_samples < frame_length:
        return 0
    return 1 + (n_samples - frame_length) // hop_length


def frame(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Strided view of `y [shape=(..., n)]` as `(..., n_frames, frame_length)`; no copy."""
    if y.shape[-1] < frame_length:
        return np.empty(y.shape[:-1] + (0, frame_length), dtype=y.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(y, frame_length, axis=-1)
    return windows[..., ::hop_length, :]


class StreamFramer:
    """Cuts a stream of `(channels, n)` blocks into the frames a whole-signal call would give.

    `push` returns a contiguous segment whose `frame(segment, frame_length, hop_length)` are the
    next frames, in order; `finish` applies the end padding and returns the last ones. The
    concatenated frames equal those of the padded whole signal exactly, whatever the block sizes.
    """

    def __init__(
        self, frame_length: int, hop_length: int, *, center: bool = True, pad_mode: str = "constant"
    ):
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.center = center
        self.pad_mode = pad_mode
        self._buffer: np.ndarray | None = None  # samples from the next frame's start onwards
        self._last: np.ndarray | None = None  # last sample seen, for edge padding at the end
        self._skip = 0  # samples still to drop before the next frame starts (hop > frame_length)

    def _pad(self, edge: np.ndarray, channels: int, dtype) -> np.ndarray:
        width = self.frame_length // 2
        if self.pad_mode == "edge":
            return np.repeat(edge[:, None], width, axis=1).astype(dtype, copy=False)
        return np.zeros((channels, width), dtype=dtype)

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim != 2:
            raise ValueError("blocks must have shape (channels, n)")
        if block.shape[1] == 0:
            return self._empty(block)
        self._last = block[:, -1]
        if self._buffer is None:
            head = self._pad(block[:, 0], block.shape[0], block.dtype) if self.center else None
            self._buffer = block if head is None else np.concatenate([head, block], axis=1)
        else:
            self._buffer = np.concatenate([self._buffer, block], axis=1)
        self._drop_skipped()
        return self._take(final=False)

    def _drop_skipped(self) -> None:
        if self._skip:
            dropped = min(self._skip, self._buffer.shape[1])
            self._buffer = self._buffer[:, dropped:]
            self._skip -= dropped

    def finish(self) -> np.ndarray:
        if self._buffer is None:
            return np.zeros((0, 0), dtype=np.float32)
        if self.center:
            channels = self._buffer.shape[0]
            tail = self._pad(self._last, channels, self._buffer.dtype)
            self._buffer = np.concatenate([self._buffer, tail], axis=1)
            self._drop_skipped()
        return self._take(final=True)

    def _empty(self, like: np.ndarray) -> np.ndarray:
        return np.zeros((like.shape[0], 0), dtype=like.dtype)

    def _take(self, final: bool) -> np.ndarray:
        buffer = self._buffer
        available = buffer.shape[1]
        if available < self.frame_length:
            if final:
                self._buffer = self._empty(buffer)
            return self._empty(buffer)
        count = 1 + (available - self.frame_length) // self.hop_length
        end = (count - 1) * self.hop_length + self.frame_length
        segment = buffer[:, :end]
        consumed = count * self.hop_length
        # Keep only what later frames still need; copy so the big block can be freed.
        self._buffer = buffer[:, consumed:].copy() if consumed < available else self._empty(buffer)
        self._skip = max(0, consumed - available)
        return segment


def rowwise_matmul(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`x @ weights` for `x [shape=(..., T, k)]`, each row its own product.

    A BLAS matrix product may round a row differently depending on how many rows share the call
    and where the row sits among them (OpenBLAS's edge kernels do), so the frames of a block
    would not equal those of the whole file. One row per product makes every row's numbers
    independent of the block it came in, at a few microseconds per audio second.
    """
    return np.matmul(x[..., None, :], weights)[..., 0, :]
