"""A test-only extractor that misbehaves on marked files: crashes its worker, hangs, or raises.

A file is marked by its content: its first samples are a constant 0.25 (DC). Loaded into the
CLI under test with `AUDIOKIT_PLUGINS=plugins.faulty`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.extractors.base import Extractor, key_columns, param, register

MARK = 0.25


@dataclass(frozen=True)
class FaultyParams:
    mode: str = param("abort", "what to do on a marked file", choices=("abort", "hang", "raise", "none"))


class _Stream:
    def __init__(self, mode: str):
        self.mode = mode
        self.samples = 0
        self.checked = False

    def push(self, block: np.ndarray):
        import plugins.imported_once  # noqa: F401  (a library used lazily, listed in `preload`)

        if not self.checked and block.shape[1] >= 64:
            self.checked = True
            if np.abs(block[:, :64] - MARK).max() < 1e-3:
                if self.mode == "abort":
                    os.abort()
                elif self.mode == "hang":
                    time.sleep(3600)
                elif self.mode == "raise":
                    raise RuntimeError("marked file")
        self.samples += block.shape[1]
        return []

    def finish(self):
        batch = pa.RecordBatch.from_arrays(
            [pa.array([0], pa.int32()), pa.array([self.samples], pa.int64())], names=["channel", "samples"]
        )
        return [batch]


@register
class Faulty(Extractor):
    name = "faulty"
    table = "faulty"
    description = "test only: misbehaves on files starting with a constant 0.25"
    Params = FaultyParams
    preload = ("plugins.imported_once",)

    @property
    def sample_rate(self):
        return None  # native rate: the mark is not smeared by resampling

    def schema(self) -> pa.Schema:
        return pa.schema(key_columns() + [pa.field("samples", pa.int64())])

    def start(self, channels: int, sample_rate: int):
        return _Stream(self.params.mode)
