"""Channel policy: how a file's channels become the `channel` column."""

from __future__ import annotations

import numpy as np


def output_channels(policy: str, channels: int) -> int:
    return channels if policy == "each" else 1


def apply_channel_policy(block: np.ndarray, policy: str) -> np.ndarray:
    """`(n, channels)` → `(n, out_channels)`: `mix` averages (like librosa's to_mono), `first`
    keeps channel 0, `each` keeps all."""
    if policy == "each" or block.shape[1] == 1:
        return block
    if policy == "first":
        return np.ascontiguousarray(block[:, :1])
    # Sum channel by channel, then divide: the same float32 operations as librosa's
    # np.mean(y, axis=0) on (channels, n) — and ~15× faster than a strided mean over axis 1.
    mixed = block[:, 0].copy()
    for c in range(1, block.shape[1]):
        mixed += block[:, c]
    mixed /= np.float32(block.shape[1])
    return mixed[:, None]
