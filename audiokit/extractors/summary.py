"""`summary`: openSMILE-style functionals of the chain's frame tables, per file and per segment.

It reads no samples. The pipeline hands it every batch of rows the chain's other extractors
write for the file (`consumes_rows`), and finishes it after them all. For every frame table
(a table with a `time_s` column: mfcc, logmel, spectral, chroma, segment_probs, …) and every
float column of it, it writes the mean, standard deviation, minimum, maximum and the 10th,
50th and 90th percentiles per channel, as `<table>.<column>.<stat>` (vectors stay vectors). With
`segments` in the chain it writes the same statistics per segment: the frames whose centre
`time_s` lies in `[start_s, end_s)` (the last segment of a channel also takes a frame centred
on its end).

Memory stays bounded: a file's frame values go to temporary files (disk), and the statistics
are computed one vector component at a time, read back in chunks (a 10-hour file at librosa's
hop: ~6 MB each).
Means and standard deviations are computed in float64 (numpy's `mean`/`std`, population
std), percentiles with numpy's linear interpolation; all are written as float32.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.extractors.base import Extractor, key_columns, register, vector_array, vector_type
from audiokit.store.arrays import numeric, strings

STATS = ("mean", "std", "min", "max", "p10", "p50", "p90")
_READ_ROWS = 1 << 16  # rows read back at a time
SEGMENT_TABLE = "segments"


@dataclass(frozen=True)
class SummaryParams:
    pass


@dataclass(frozen=True)
class SummarisedColumn:
    table: str
    column: str
    size: int | None  # vector length; None for a scalar column


def summarised_columns(schema: pa.Schema) -> list[tuple[str, int | None]]:
    """The float columns of a frame table (one with `time_s`), with their vector sizes."""
    if "time_s" not in schema.names:
        return []
    out = []
    for field in schema:
        if field.name in ("file_id", "channel", "frame", "time_s"):
            continue
        if pa.types.is_floating(field.type):
            out.append((field.name, None))
        elif pa.types.is_fixed_size_list(field.type) and pa.types.is_floating(field.type.value_type):
            out.append((field.name, field.type.list_size))
    return out


def functionals(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over axis 0 of `(frames, ...)` values; NaN for no frames."""
    if values.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return dict.fromkeys(STATS, nan)
    p10, p50, p90 = np.percentile(values, [10.0, 50.0, 90.0], axis=0)
    as64 = values.astype(np.float64)
    return {
        "mean": as64.mean(axis=0),
        "std": as64.std(axis=0),
        "min": values.min(axis=0).astype(np.float64),
        "max": values.max(axis=0).astype(np.float64),
        "p10": p10,
        "p50": p50,
        "p90": p90,
    }


@register
class Summary(Extractor):
    name = "summary"
    table = "summary"
    description = (
        "mean, std, min, max, p10/p50/p90 of every frame-table column of the chain, per file and channel, "
        "and per segment with `segments` in the chain"
    )
    Params = SummaryParams
    consumes_rows = True

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.columns: list[SummarisedColumn] = []

    def bind(self, chain: dict[str, Extractor]) -> None:
        """Learn the chain's tables (their schemas decide this table's columns)."""
        self.columns = []
        self.per_segment = False
        for ext in chain.values():
            if ext is self or getattr(ext, "consumes_rows", False):
                continue
            if ext.table == SEGMENT_TABLE:
                self.per_segment = True
            for column, size in summarised_columns(ext.schema()):
                self.columns.append(SummarisedColumn(ext.table, column, size))

    @staticmethod
    def reads(cls: type[Extractor]) -> bool:
        """Whether `summary` needs the rows of extractor class `cls` from the same run (frame
        tables and segments): an incremental run that redoes one redoes the other."""
        from audiokit.extractors.frames import FrameExtractor
        from audiokit.extractors.loudness import LoudnessFrames
        from audiokit.extractors.segments import _SegmenterBase

        return issubclass(cls, (FrameExtractor, _SegmenterBase, LoudnessFrames))

    def schema(self) -> pa.Schema:
        fields = key_columns() + [
            pa.field("segment_index", pa.int32()),  # null: the whole file
            pa.field("label", pa.string()),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
        ]
        for c in self.columns:
            kind = pa.float32() if c.size is None else vector_type(c.size)
            fields += [pa.field(f"{c.table}.{c.column}.{stat}", kind) for stat in STATS]
        return pa.schema(fields)

    def start(self, channels: int, sample_rate: int) -> SummaryStream:
        return SummaryStream(self)


class _Spool:
    """Rows of one (table, column, channel), `(n, width)`, appended to a temporary file."""

    def __init__(self, width: int, dtype):
        self.width = width
        self.dtype = np.dtype(dtype)
        self.file = tempfile.TemporaryFile()
        self.rows = 0

    def add(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.rows += values.shape[0]

    def component(self, index: int) -> np.ndarray:
        """Column `index` of the rows, `(n,)`, read back a chunk of rows at a time (a memory
        map would keep the whole file's pages in the process)."""
        self.file.flush()
        self.file.seek(0)
        out = np.empty(self.rows, dtype=self.dtype)
        for start in range(0, self.rows, _READ_ROWS):
            count = min(_READ_ROWS, self.rows - start)
            chunk = np.fromfile(self.file, dtype=self.dtype, count=count * self.width).reshape(count, self.width)
            out[start : start + count] = chunk[:, index]
        return out

    def close(self) -> None:
        self.file.close()


class SummaryStream:
    def __init__(self, extractor: Summary):
        self.extractor = extractor
        self.fields = [f for f in extractor.schema() if f.name != "file_id"]
        self.wanted = {(c.table, c.column): c for c in extractor.columns}
        self.tables = {c.table for c in extractor.columns}
        self.values: dict[tuple[str, str, int], _Spool] = {}
        self.times: dict[tuple[str, int], _Spool] = {}
        self.segments: list[dict] = []

    def push(self, block: np.ndarray) -> list[pa.RecordBatch]:
        return []

    def observe(self, table: str, batch: pa.RecordBatch) -> None:
        """Rows another extractor of the chain wrote for this file (without `file_id`)."""
        if table == SEGMENT_TABLE and self.extractor.per_segment:
            self.segments += batch.select(["channel", "start_s", "end_s", "label"]).to_pylist()
        if table not in self.tables or batch.num_rows == 0:
            return
        channel = batch.column("channel").to_numpy()
        bounds = np.flatnonzero(np.diff(channel)) + 1  # rows are channel-major
        starts, stops = np.r_[0, bounds], np.r_[bounds, channel.size]
        times = batch.column("time_s").to_numpy()
        columns = {}
        for (t, column), spec in self.wanted.items():
            if t != table:
                continue
            array = batch.column(column)
            if spec.size is None:
                columns[column] = array.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)[:, None]
            else:
                flat = array.values.to_numpy(zero_copy_only=False)
                columns[column] = flat.reshape(batch.num_rows, spec.size)
        for start, stop in zip(starts, stops):
            c = int(channel[start])
            self._spool(self.times, (table, c), 1, np.float64).add(times[start:stop, None])
            for column, values in columns.items():
                self._spool(self.values, (table, column, c), values.shape[1], np.float32).add(values[start:stop])

    @staticmethod
    def _spool(spools: dict, key, width: int, dtype) -> _Spool:
        if key not in spools:
            spools[key] = _Spool(width, dtype)
        return spools[key]

    def finish(self) -> list[pa.RecordBatch]:
        try:
            return self._rows()
        finally:
            for spool in [*self.values.values(), *self.times.values()]:
                spool.close()

    def _rows(self) -> list[pa.RecordBatch]:
        # A file too short for any frame still gets its row (of NaN), on channel 0.
        channels = sorted({key[-1] for key in self.times} | {s["channel"] for s in self.segments}) or [0]
        # Row descriptors: (channel, segment_index, label, start_s, end_s); per file first.
        rows = [(c, None, None, None, None) for c in channels]
        per_channel: dict[int, int] = {}
        ordered = sorted(self.segments, key=lambda s: (s["channel"], s["start_s"]))
        for s in ordered:
            index = per_channel.get(s["channel"], 0)
            per_channel[s["channel"]] = index + 1
            rows.append((s["channel"], index, s["label"], s["start_s"], s["end_s"]))
        last_of_channel = {s["channel"]: s["end_s"] for s in ordered}
        stats: dict[str, list] = {}
        for spec in self.extractor.columns:
            width = 1 if spec.size is None else spec.size
            for stat in STATS:
                stats[f"{spec.table}.{spec.column}.{stat}"] = [np.full(width, np.nan, dtype=np.float32) for _ in rows]
            for c in channels:
                spool = self.values.get((spec.table, spec.column, c))
                if spool is None:
                    continue
                times = self.times[(spec.table, c)].component(0)
                spans = []  # (row number, first frame, stop frame)
                for i, (channel, index, _label, start_s, end_s) in enumerate(rows):
                    if channel != c:
                        continue
                    if index is None:
                        spans.append((i, 0, times.size))
                    else:
                        side = "right" if end_s == last_of_channel[c] else "left"
                        spans.append((i, int(np.searchsorted(times, start_s, "left")), int(np.searchsorted(times, end_s, side))))
                for d in range(width):
                    component = spool.component(d)  # one component in memory at a time
                    for i, first, stop in spans:
                        for stat, value in functionals(component[first:stop]).items():
                            stats[f"{spec.table}.{spec.column}.{stat}"][i][d] = value
        arrays = {
            "channel": numeric(np.array([r[0] for r in rows], dtype=np.int32)),
            "segment_index": numeric(
                np.array([-1 if r[1] is None else r[1] for r in rows], dtype=np.int32),
                valid=np.array([r[1] is not None for r in rows]),
            ),
            "label": strings([r[2] for r in rows]),
            "start_s": _nullable_float([r[3] for r in rows]),
            "end_s": _nullable_float([r[4] for r in rows]),
        }
        for spec in self.extractor.columns:
            for stat in STATS:
                name = f"{spec.table}.{spec.column}.{stat}"
                values = np.stack(stats[name]).astype(np.float32)
                arrays[name] = numeric(values[:, 0]) if spec.size is None else vector_array(values)
        return [pa.RecordBatch.from_arrays([arrays[f.name] for f in self.fields], schema=pa.schema(self.fields))]


def _nullable_float(values: list) -> pa.Array:
    valid = np.array([v is not None for v in values])
    return numeric(np.array([np.nan if v is None else v for v in values], dtype=np.float64), valid=valid)


__all__ = ["STATS", "Summary", "functionals", "summarised_columns"]
