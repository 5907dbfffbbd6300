"""Writing Parquet parts atomically (write under a temporary name, fsync, rename), and the
staged rows workers hand the writer."""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

TMP_SUFFIX = ".tmp"
ROW_GROUP_ROWS = 64 * 1024
# zstd: faster to write and read than snappy on feature floats, smaller, and read by
# pyarrow, pandas, polars, DuckDB and Spark alike.
COMPRESSION = "zstd"


def new_part_name() -> str:
    return f"part-{uuid.uuid4().hex[:16]}.parquet"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartWriter:
    """Buffers record batches into large row groups; `commit()` makes the file appear whole."""

    def __init__(self, final_path: str, schema: pa.Schema):
        self.final_path = final_path
        self.schema = schema
        # A leading dot hides a part being written from directory readers (pyarrow.dataset,
        # pandas, polars and DuckDB globs skip hidden files) until its rename.
        directory, name = os.path.split(final_path)
        self.tmp_path = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        if data.num_rows == 0:
            return
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        self._pending.extend(batches)
        self._pending_rows += data.num_rows
        self.rows += data.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._writer = self._open()
        table = pa.Table.from_batches(self._pending, schema=self.schema.remove_metadata()).replace_schema_metadata(
            self.schema.metadata
        )
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._pending = []
        self._pending_rows = 0

    def _open(self) -> pq.ParquetWriter:
        # Dictionary-encode only text (file ids, paths, statuses): on feature floats the encoder
        # builds a dictionary that overflows and is thrown away, which doubled the write time.
        text = [f.name for f in self.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        return pq.ParquetWriter(self.tmp_path, self.schema, compression=COMPRESSION, use_dictionary=text)

    def commit(self) -> str:
        self._flush()
        if self._writer is None:  # no rows: still a valid (empty) part
            self._writer = self._open()
        self._writer.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.final_path)
        fsync_dir(os.path.dirname(self.final_path))
        return self.final_path

    def abort(self) -> None:
        writer, self._writer = self._writer, None
        _discard(writer, self.tmp_path)


def _discard(writer, path: str) -> None:
    """Close an unfinished writer and delete what it wrote."""
    try:
        if writer is not None:
            writer.close()
    finally:
        if os.path.exists(path):
            os.unlink(path)


def iter_batches(path: str, batch_size: int = 65536):
    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)


# A file's rows of one table up to this size travel with its outcome, in memory (a clip's;
# the writer holds a commit batch's worth of them per table). AUDIOKIT_STAGE_INLINE_BYTES=0
# stages every file's rows on disk (the crash tests' kill points).
INLINE_BYTES = int(os.environ.get("AUDIOKIT_STAGE_INLINE_BYTES", 256 << 10))


class StageWriter:
    """One file's rows of one table, as its worker hands them to the writer.

    Rows stay in memory while they are small and travel with the outcome (a clip's: no file to
    create, read back and delete, which cost a clip more than its mel filterbank); past
    `inline_bytes` (a long recording's) they go to an uncompressed Arrow IPC file in the staging
    area as they come, so they never sit in memory. Either way Parquet is encoded once, by the writer, into
    the part the rows end up in. A staged file is never part of the dataset: a run deletes the
    staging area on open."""

    def __init__(self, path: str, schema: pa.Schema, inline_bytes: int = INLINE_BYTES):
        self.path = path
        self.schema = schema.remove_metadata()
        self.inline_bytes = inline_bytes
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._held: list[pa.RecordBatch] = []
        self._held_bytes = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.rows += batch.num_rows
        if self._writer is not None:
            self._writer.write_batch(batch)
            return
        self._held.append(batch)
        self._held_bytes += batch.nbytes
        if self._held_bytes > self.inline_bytes:
            self._writer = pa.ipc.new_file(self.path, self.schema)
            held, self._held = self._held, []
            for b in held:
                self._writer.write_batch(b)

    def commit(self) -> str | pa.Table:
        """The staged rows: the IPC file's path, or the rows themselves when they were small."""
        if self._writer is None:
            held, self._held = self._held, []
            return pa.Table.from_batches(held, schema=self.schema)
        self._writer.close()
        self._writer = None
        return self.path

    def abort(self) -> None:
        self._held = []
        writer, self._writer = self._writer, None
        _discard(writer, self.path)


def iter_staged(path: str):
    """The record batches of a staged file, each read into memory (the file may go after)."""
    with pa.OSFile(path) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
