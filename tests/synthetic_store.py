"""Datasets written through the store's own commit path (staged Arrow files, parts, the `files`
part last), for tables whose extractor needs what a test machine may lack (model weights) and
for datasets too large to extract in a test or a benchmark (10^5 files)."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa

from audiokit import __version__
from audiokit.discover import make_file_id
from audiokit.store.arrays import numeric, repeated
from audiokit.store.dataset import Dataset, FileResult
from audiokit.store.parts import StageWriter


def files_row(relpath: str, *, root: str = "/audio", duration_s: float = 1.0, status: str = "ok", **extra) -> dict:
    row = {
        "file_id": make_file_id(relpath),
        "path": os.path.join(root, relpath),
        "relpath": relpath,
        "size_bytes": 1000,
        "mtime_ns": 1,
        "duration_s": duration_s if status == "ok" else None,
        "sample_rate": 16000,
        "channels": 1,
        "format": "WAV/PCM_16",
        "status": status,
        "error_kind": None if status == "ok" else "decode",
        "error": None if status == "ok" else "decoding failed after 0.00 s of audio: bad header",
        "config_hash": "synthetic",
        "extractors": [],
        "processed_at": int(time.time() * 1000),
    }
    row.update(extra)
    return row


def frame_batch(
    file_id: str, values: np.ndarray, *, channel: int = 0, hop_s: float = 0.01, column: str = "mfcc"
) -> pa.RecordBatch:
    """Frame rows of one file: `values` [shape=(frames, n)] float32."""
    n_frames, size = values.shape
    frames = np.arange(n_frames, dtype=np.int64)
    flat = numeric(np.ascontiguousarray(values, dtype=np.float32))
    return pa.RecordBatch.from_arrays(
        [
            repeated(file_id, n_frames),
            numeric(np.full(n_frames, channel, dtype=np.int32)),
            numeric(frames),
            numeric(frames * hop_s),
            pa.FixedSizeListArray.from_arrays(flat, size),
        ],
        schema=frame_schema(size, column),
    )


def frame_schema(size: int, column: str = "mfcc") -> pa.Schema:
    return pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("channel", pa.int32(), nullable=False),
            pa.field("frame", pa.int64(), nullable=False),
            pa.field("time_s", pa.float64(), nullable=False),
            pa.field(column, pa.list_(pa.float32(), size)),
        ]
    )


EMBEDDINGS_SCHEMA = pa.schema(
    [
        pa.field("file_id", pa.string(), nullable=False),
        pa.field("channel", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), 4)),
    ]
)


def embedding_batch(file_id: str, values: np.ndarray, *, model: str = "ge2e", window_s: float = 1.6) -> pa.RecordBatch:
    n = values.shape[0]
    starts = np.arange(n) * (window_s / 2)
    return pa.RecordBatch.from_arrays(
        [
            repeated(file_id, n),
            numeric(np.zeros(n, dtype=np.int32)),
            numeric(starts),
            numeric(starts + window_s),
            repeated(model, n),
            pa.FixedSizeListArray.from_arrays(numeric(np.ascontiguousarray(values, dtype=np.float32)), values.shape[1]),
        ],
        schema=EMBEDDINGS_SCHEMA,
    )


def commit_files(
    root: str, batches: list[tuple[dict, dict[str, pa.RecordBatch]]], *, schemas: dict[str, pa.Schema]
) -> None:
    """One commit of `(files row, {table: rows})` pairs, as a run's writer does it."""
    with Dataset(root, version=__version__) as dataset:
        results = []
        for row, tables in batches:
            staged = {}
            for table, batch in tables.items():
                writer = StageWriter(dataset.staging_path(row["file_id"], table), schemas[table])
                writer.write(batch)
                staged[table] = writer.commit()
            results.append(
                FileResult(row["file_id"], row, staged=staged, rows={t: b.num_rows for t, b in tables.items()})
            )
        config = {"chain": sorted(schemas)}
        dataset.commit(results, schemas=schemas, config=config, config_hash="synthetic")
