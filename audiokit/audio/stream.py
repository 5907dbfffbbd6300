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
    return block.mean(axis=1, keepdims=True, dtype=np.float32)
