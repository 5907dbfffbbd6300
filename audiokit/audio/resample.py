"""Streaming resampling with soxr (HQ), equal to `librosa.resample(res_type="soxr_hq")`."""

from __future__ import annotations

import math

import numpy as np


class Resampler:
    """Feed `(n, channels)` blocks at `in_rate`; get the same samples librosa's one-shot call
    gives at `out_rate`, including its final length of `ceil(n * out_rate / in_rate)`."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.samples_in = 0
        self.samples_out = 0
        self._stream = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")

    def push(self, block: np.ndarray) -> np.ndarray:
        self.samples_in += block.shape[0]
        out = block if self._stream is None else self._stream.resample_chunk(block, last=False)
        self.samples_out += out.shape[0]
        return out

    def finish(self, channels: int) -> np.ndarray:
        if self._stream is None:
            return np.zeros((0, channels), dtype=np.float32)
        tail = self._stream.resample_chunk(np.zeros((0, channels), dtype=np.float32), last=True)
        self.samples_out += tail.shape[0]
        # librosa fixes the length to ceil(n * ratio) by zero padding (soxr rounds).
        target = int(math.ceil(self.samples_in * (float(self.out_rate) / self.in_rate)))
        if self.samples_out < target:
            pad = np.zeros((target - self.samples_out, channels), dtype=np.float32)
            tail = np.concatenate([tail, pad])
            self.samples_out = target
        elif self.samples_out > target:
            drop = self.samples_out - target
            tail = tail[: max(0, tail.shape[0] - drop)]
            self.samples_out = target
        return tail
