"""The extractor protocol and registry.

An extractor is built once per worker from its frozen `Params` (filterbanks, windows, weights
made in `__init__`), declares the sample rate it wants and the Arrow schema of the table it
writes, and for each file opens a stream that takes `(channels, n)` float32 blocks at that rate
and returns Arrow record batches (every column but `file_id`, which the pipeline adds).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from audiokit.config import param  # noqa: F401  (re-exported: extractors declare their Params with it)
from audiokit.store.arrays import numeric

REGISTRY: dict[str, type[Extractor]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make an extractor available by its `name`."""
    if cls.name in REGISTRY:
        raise ValueError(f"extractor {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


class ExtractorStream(Protocol):
    def push(self, block: np.ndarray) -> Iterable[pa.RecordBatch]: ...

    def finish(self) -> Iterable[pa.RecordBatch]: ...


class Extractor:
    name: ClassVar[str]
    table: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    # Bump when the numbers an extractor writes change for the same params: re-runs redo it.
    version: ClassVar[int] = 1
    # Modules the local engine imports before it forks its workers, which then inherit them
    # instead of each importing them on its first file.
    preload: ClassVar[tuple[str, ...]] = ()
    # True: the extractor's blocks carry the file's own channels whatever `audio.channels` says
    # (loudness weighs and sums channels itself); its `channel` column is then its own business.
    native_channels: ClassVar[bool] = False
    # True: the extractor reads no samples but the rows the chain's other extractors write for
    # the same file (`summary`): its stream gets `observe(table, batch)` for each of their
    # batches and is finished after them all; `bind(extractors)` shows it the chain first, and
    # `reads(cls)` says whose rows it needs (an incremental run redoes those with it).
    consumes_rows: ClassVar[bool] = False

    def bind(self, chain: dict[str, Extractor]) -> None:
        """Only for `consumes_rows` extractors: the chain's extractors, before `schema()`."""

    @staticmethod
    def reads(cls: type[Extractor]) -> bool:
        return False

    def __init__(self, params: Any, *, backend: str = "numpy", device: str = "cpu"):
        self.params = params
        self.backend = backend
        self.device = device

    @property
    def sample_rate(self) -> int | None:
        """The rate blocks arrive at; None means the file's native rate."""
        return getattr(self.params, "sr", None)

    def schema(self) -> pa.Schema:
        """The whole table schema, starting with `file_id` and `channel`."""
        raise NotImplementedError

    def start(self, channels: int, sample_rate: int) -> ExtractorStream:
        raise NotImplementedError

    def validate(self) -> None:
        """Raise ValueError for parameter values that make no sense together."""

    def device_stage(self):
        """None, or the part of this extractor that runs in the process owning the device,
        batched across files (`audiokit.stages`): an object with `key(rate)` (stages with equal
        keys share what the workers hold), `collector(channels, rate, max_seconds)` (a stream
        kept in the worker; its `held()` travels to the device process), `load(held)` (the
        file's share of one device batch), `compute(helds)` and `rows(payload)`."""
        return None

    def seconds_per_audio_hour(self) -> float:
        """A generous bound on the time one worker needs per hour of audio; the engine's per-file
        time limit (`run.file_timeout`) is raised to it. 0 for extractors far faster than that."""
        return 0.0


class TooLongForDevice(Exception):
    """What a device stage's collector holds outgrew `run.max_device_file_s`: the worker
    computes that file itself (per file, block by block), so memory stays bounded."""


def key_columns() -> list[pa.Field]:
    return [pa.field("file_id", pa.string(), nullable=False), pa.field("channel", pa.int32(), nullable=False)]


def span_columns() -> list[pa.Field]:
    """The stretch of the file a row covers (segments, embeddings), in seconds."""
    return [pa.field("start_s", pa.float64(), nullable=False), pa.field("end_s", pa.float64(), nullable=False)]


def vector_type(size: int) -> pa.DataType:
    return pa.list_(pa.float32(), size)


def vector_array(values: np.ndarray) -> pa.Array:
    """`(rows, D)` float32 → `fixed_size_list<float32>[D]` without copying the values."""
    rows, size = values.shape
    flat = numeric(np.asarray(values, dtype=np.float32))
    return pa.FixedSizeListArray.from_arrays(flat, size)
