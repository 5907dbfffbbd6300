"""Reading a dataset from Python: `audiokit.open(OUT)`.

    ds = audiokit.open("features/")
    ds.files                                  # the `files` table (Arrow; .to_pandas() on demand)
    ds.tables                                 # {name: TableInfo(rows, parts, columns, config)}
    X = ds.frames("mfcc", "music/a.flac")     # np.ndarray [shape=(frames, n_mfcc)] float32
    ds.segments("music/a.flac")               # Arrow table: channel, start_s, end_s, label, confidence
    ds.torch("mfcc", window_frames=128)       # a torch Dataset (see audiokit.torchdata)

A reader is a snapshot: it reads the `files` table once, when opened, and only ever returns rows
of files in that snapshot. The `files` part is the commit point of every batch, so rows of a
batch whose commit has not happened yet (feature parts written, `files` part not) are never
seen. One file's rows are read from the one part that holds them (each part names its files in
its footer), and inside that part only from the row groups whose `file_id` column holds the file,
and only the columns asked for: reading one file costs the same in a dataset of 10 files or 10^5.
"""

from __future__ import annotations

import builtins
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audiokit.errors import ConfigError
from audiokit.store.arrays import numeric, strings
from audiokit.store.schema import FILES_TABLE, META_DIR, part_file_ids

KEY_COLUMNS = ("file_id", "channel")
ORDER_COLUMNS = ("frame", "start_s")  # what orders a file's rows, per kind of table
COMPACT_JOURNAL = "compacting.json"


def table_kind(columns: list[str]) -> str:
    """frames (one row per analysis frame), embeddings, spans (segments and the like), other."""
    if "frame" in columns:
        return "frames"
    if "embedding" in columns:
        return "embeddings"
    if "start_s" in columns:
        return "spans"
    return "other"


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int  # rows of files in this reader's snapshot
    parts: int
    columns: list[str]
    config: dict  # the parameters of its extractor in the run that wrote the newest part

    @property
    def kind(self) -> str:
        return table_kind(self.columns)


class DatasetReader:
    """A read-only snapshot of an audiokit dataset (see the module docstring)."""

    def __init__(self, root: str, *, files: pa.Table | None = None):
        self.root = os.path.abspath(root)
        if not os.path.isdir(os.path.join(self.root, META_DIR)):
            raise ConfigError(f"{root} is not an audiokit dataset (no {META_DIR}/ inside)")
        self.files = files if files is not None else _read_files(self.root)
        ids = self.files.column("file_id").to_pylist()
        self._row_of = {file_id: i for i, file_id in enumerate(ids)}
        self._by_relpath = {r: i for i, r in enumerate(self.files.column("relpath").to_pylist()) if r is not None}
        self._by_path = {p: i for i, p in enumerate(self.files.column("path").to_pylist()) if p is not None}
        self._parts: dict[str, dict[str, list[str]]] = {}  # table -> file_id -> parts holding its rows
        self._footer_ids: dict[str, list[tuple[str, bytes]]] = {}
        self._tables: dict[str, TableInfo] | None = None
        self._schemas: dict[str, pa.Schema] = {}
        self._cache = ReadCache()

    def __getstate__(self) -> dict:
        # What a DataLoader worker gets: the snapshot itself, never a second read of `files`.
        return {"root": self.root, "files": self.files}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], files=state["files"])

    def __repr__(self) -> str:
        return f"<audiokit dataset {self.root}: {self.files.num_rows} files, tables {', '.join(self.table_names)}>"

    # -- what is there -------------------------------------------------------------------------

    @property
    def table_names(self) -> list[str]:
        return sorted(
            name
            for name in os.listdir(self.root)
            if name not in (META_DIR, FILES_TABLE)
            and not name.startswith(".")
            and os.path.isdir(os.path.join(self.root, name))
        )

    @property
    def tables(self) -> dict[str, TableInfo]:
        """Every feature table: rows (of this snapshot's files), parts, columns, config."""
        if self._tables is None:
            self._tables = {name: self._table_info(name) for name in self.table_names}
        return self._tables

    def _table_info(self, name: str) -> TableInfo:
        parts = self._part_index(name)
        paths = sorted({p for ps in parts.values() for p in ps})
        rows, columns, config, newest = 0, [], {}, -1.0
        for path in paths:
            meta = pq.ParquetFile(path).metadata
            ids = set(part_file_ids(meta.schema.to_arrow_schema().metadata) or [])
            if ids <= self._row_of.keys():
                rows += meta.num_rows
            else:  # a part that also holds rows of files outside the snapshot: count ours
                table = pq.read_table(path, columns=["file_id"])
                rows += sum(1 for f in table.column(0).to_pylist() if f in self._row_of)
            schema = meta.schema.to_arrow_schema()
            columns = schema.names
            mtime = os.path.getmtime(path)
            if mtime > newest:
                newest = mtime
                resolved = json.loads((schema.metadata or {}).get(b"audiokit.config", b"{}"))
                config = resolved.get(name, resolved)
        return TableInfo(name=name, rows=rows, parts=len(paths), columns=columns, config=config)

    def file(self, path: str) -> dict:
        """The `files` row of one file, given its relpath, file_id or absolute path."""
        return self.files.slice(self._index(path), 1).to_pylist()[0]

    def file_id(self, path: str) -> str:
        return self.files.column("file_id")[self._index(path)].as_py()

    def _index(self, path: str) -> int:
        for lookup, key in ((self._row_of, path), (self._by_relpath, path), (self._by_path, os.path.abspath(path))):
            if key in lookup:
                return lookup[key]
        raise ConfigError(f"{path} is not in the dataset {self.root} (give a relpath, a file_id or an absolute path)")

    # -- one file's rows -----------------------------------------------------------------------

    def rows(self, table: str, path: str, *, columns: list[str] | None = None, channel: int | None = None) -> pa.Table:
        """One file's rows of `table` as an Arrow table, in order (channel, then frame or start)."""
        file_id = self.file_id(path)
        part = self._locate(table, file_id)
        if part is None:
            return self._empty(table, columns)
        wanted = None if columns is None else list(dict.fromkeys([*KEY_COLUMNS, *columns]))
        result = _read_file_rows(part, file_id, wanted, self._cache)
        if channel is not None:
            import pyarrow.compute as pc

            result = result.filter(pc.equal(result.column("channel"), int_scalar(channel)))
        order = [("channel", "ascending")] + [(c, "ascending") for c in ORDER_COLUMNS if c in result.column_names]
        result = result.sort_by(order)
        if columns is not None:
            result = result.select(columns)
        return result

    def iter_rows(self, table: str, path: str, *, columns: list[str]) -> Iterator[pa.Table]:
        """One file's rows in pieces of at most a row group, in stored order (for files whose
        rows would not fit in memory at once: a picture of a ten-hour recording)."""
        file_id = self.file_id(path)
        part = self._locate(table, file_id)
        if part is not None:
            wanted = list(dict.fromkeys([*KEY_COLUMNS, *columns]))
            # No row-group cache: this is for files too long to hold, row group by row group.
            yield from _iter_file_rows(part, file_id, wanted, None)

    def frames(
        self, table: str, path: str, *, channel: int | None = None, columns: list[str] | None = None
    ) -> np.ndarray:
        """One file's frames of a frame table: np.ndarray [shape=(frames, n)] float32, in frame
        order. `n` is the vector's size (`mfcc`, `logmel`) or the number of scalar columns
        (`spectral`: centroid, bandwidth, … in schema order; pick some with `columns`). With
        `channels = "each"`, a file has one series per channel: say which with `channel`."""
        columns = columns or feature_columns(self._frame_table(table))
        rows = self.rows(table, path, columns=["channel", *columns], channel=channel)
        _check_one_channel(rows, table, path)
        return to_matrix(rows, columns)

    def frame_times(self, table: str, path: str, *, channel: int | None = None) -> np.ndarray:
        """Frame centres in seconds, float64, aligned with `frames(...)`."""
        self._frame_table(table)
        rows = self.rows(table, path, columns=["channel", "time_s"], channel=channel)
        _check_one_channel(rows, table, path)
        return _as_float64(rows.column("time_s").combine_chunks())

    def segments(self, path: str, *, table: str = "segments", channel: int | None = None) -> pa.Table:
        """One file's segments: channel, start_s, end_s, label, confidence, in time order."""
        rows = self.rows(table, path, channel=channel)
        return rows.drop_columns(["file_id"])

    def embeddings(
        self, path: str, *, channel: int | None = None, model: str | None = None, table: str = "embeddings"
    ) -> np.ndarray:
        """One file's embeddings: np.ndarray [shape=(windows, D)] float32, in time order."""
        rows = self.rows(table, path, channel=channel)
        if model is not None:
            import pyarrow.compute as pc

            rows = rows.filter(pc.equal(rows.column("model"), string_scalar(model)))
        models = set(rows.column("model").to_pylist()) if rows.num_rows else set()
        if len(models) > 1:
            raise ConfigError(f"{path} has embeddings of several models {sorted(models)}: pass model=")
        _check_one_channel(rows, table, path)
        return to_matrix(rows, ["embedding"])

    def torch(self, table: str, **options):
        """A map-style `torch.utils.data.Dataset` over `table` (see `audiokit.torchdata.FrameDataset`)."""
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError(
                "ds.torch(...) needs PyTorch, which is not installed: pip install 'audiokit[torch]'"
            ) from None
        from audiokit.torchdata import FrameDataset

        return FrameDataset(self, table, **options)

    # -- where rows live -----------------------------------------------------------------------

    def schema(self, table: str) -> pa.Schema:
        """The Arrow schema of `table` (from one of its parts; without the metadata)."""
        schema = self._schemas.get(table)
        if schema is None:
            for path, _ in self._footers(table):
                try:
                    schema = pq.read_schema(path).remove_metadata()
                    break
                except FileNotFoundError:
                    continue
            if schema is None:
                raise ConfigError(f"table {table!r} in {self.root} has no parts")
            self._schemas[table] = schema
        return schema

    def _frame_table(self, table: str) -> pa.Schema:
        schema = self.schema(table)
        if table_kind(schema.names) != "frames":
            raise ConfigError(f"{table!r} is not a frame table (its columns: {', '.join(schema.names)})")
        return schema

    def _empty(self, table: str, columns: list[str] | None) -> pa.Table:
        empty = self.schema(table).empty_table()
        return empty if columns is None else empty.select(columns)

    def _footers(self, table: str) -> list[tuple[str, bytes]]:
        """(part, its footer's file-id list as JSON bytes) for every part of `table`, read once."""
        footers = self._footer_ids.get(table)
        if footers is not None:
            return footers
        directory = os.path.join(self.root, table)
        if table == FILES_TABLE or not os.path.isdir(directory):
            raise ConfigError(f"no table {table!r} in {self.root} (tables: {', '.join(self.table_names) or 'none'})")
        replaced = _parts_being_replaced(self.root, table)
        footers = []
        for name in sorted(os.listdir(directory)):
            if not (name.startswith("part-") and name.endswith(".parquet")) or name in replaced:
                continue
            path = os.path.join(directory, name)
            try:
                listed = _footer_file_ids(path)
                if listed is None:
                    ids = part_file_ids(pq.read_schema(path).metadata)
                    if ids is None:
                        ids = pq.read_table(path, columns=["file_id"]).column(0).unique().to_pylist()
                    listed = json.dumps(ids).encode()
            except FileNotFoundError:  # replaced by a run since it was listed
                continue
            footers.append((path, listed))
        self._footer_ids[table] = footers
        return footers

    def _locate(self, table: str, file_id: str) -> str | None:
        """The part of `table` holding the rows of `file_id` (the store keeps them in one part):
        a search of the footers' id lists, so one file's lookup never decodes them all."""
        index = self._parts.get(table)
        if index is not None:
            parts = index.get(file_id)
            return parts[0] if parts else None
        needle = f'"{file_id}"'.encode()
        for path, listed in self._footers(table):
            if needle in listed:
                return path
        return None

    def _part_index(self, table: str) -> dict[str, list[str]]:
        """file_id -> parts of `table` holding its rows (only files of the snapshot)."""
        index = self._parts.get(table)
        if index is not None:
            return index
        index = {}
        row_of = self._row_of
        for path, listed in self._footers(table):
            for file_id in json.loads(listed):
                if file_id in row_of:
                    index.setdefault(file_id, []).append(path)
        self._parts[table] = index
        return index


def open(root: str) -> DatasetReader:  # `audiokit.open`, like `io.open`
    """Open the dataset at `root` for reading (a snapshot; see `DatasetReader`)."""
    return DatasetReader(root)


# -- arrays -----------------------------------------------------------------------------------


def feature_columns(info: TableInfo | pa.Schema) -> list[str]:
    """The feature columns of a frame table: its vector column, else every scalar column."""
    names = info.columns if isinstance(info, TableInfo) else info.names
    return [n for n in names if n not in ("file_id", "channel", "frame", "time_s")]


def to_matrix(rows: pa.Table, columns: list[str]) -> np.ndarray:
    """Rows as np.ndarray [shape=(rows, n)] float32: one vector column, or scalar columns side by side."""
    if len(columns) == 1 and pa.types.is_fixed_size_list(rows.schema.field(columns[0]).type):
        size = rows.schema.field(columns[0]).type.list_size
        column = rows.column(columns[0])
        if rows.num_rows == 0:
            return np.zeros((0, size), dtype=np.float32)
        flat = column.combine_chunks().flatten()  # flatten() honours the slice's offset
        # A copy: Arrow's buffers are read-only, and callers normalise features in place.
        return _as_float32(flat).reshape(-1, size)
    out = np.empty((rows.num_rows, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        if pa.types.is_fixed_size_list(rows.schema.field(name).type):
            raise ConfigError(f"column {name!r} is a vector: read it on its own (columns=[{name!r}])")
        out[:, j] = _as_float32(rows.column(name).combine_chunks())
    return out


def _as_float32(array: pa.Array) -> np.ndarray:
    """A copy of a numeric Arrow array as float32, NaN where null. Straight from the values
    buffer: `to_numpy()` imports pandas (0.2 s) when it is installed."""
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        dtype = _NUMPY_TYPES.get(str(array.type))
        if dtype is not None:
            values = np.frombuffer(
                array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
            )
            out = values.astype(np.float32)  # always a copy
            if array.null_count:
                valid = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little")
                out[~valid[array.offset : array.offset + len(array)].astype(bool)] = np.nan
            return out
    return np.array(array.to_numpy(zero_copy_only=False), dtype=np.float32)


def _as_float64(array: pa.Array) -> np.ndarray:
    if str(array.type) == "double" and not array.null_count:
        return np.frombuffer(array.buffers()[1], np.float64, count=len(array), offset=array.offset * 8).copy()
    return np.array(array.to_numpy(zero_copy_only=False), dtype=np.float64)


_NUMPY_TYPES = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "halffloat": np.dtype(np.float16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
}


def _check_one_channel(rows: pa.Table, table: str, path: str) -> None:
    if rows.num_rows and "channel" in rows.column_names:
        channels = rows.column("channel")
        import pyarrow.compute as pc

        low, high = pc.min_max(channels).values()
        if low.as_py() != high.as_py():
            found = sorted(set(channels.to_pylist()))
            raise ConfigError(f"{path} has {len(found)} channels {found} in {table}: pass channel=")


def string_scalar(value: str) -> pa.Scalar:
    """An Arrow string scalar built from a buffer: pyarrow's conversion of a Python value (what
    `pc.equal(column, "x")` does) imports pandas when it is installed, 0.2 s per process."""
    return strings([value])[0]


def int_scalar(value: int, type: pa.DataType = pa.int32()) -> pa.Scalar:
    return numeric(np.array([value], dtype=np.int64)).cast(type)[0]


# -- Parquet ---------------------------------------------------------------------------------


def _read_files(root: str) -> pa.Table:
    """The `files` table, its parts read by a few threads: after one long run it is ~1,500
    parts of 64 rows (until the next run compacts them), and Parquet decoding releases the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    from audiokit.store.schema import FILES_SCHEMA

    directory = os.path.join(root, FILES_TABLE)
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    parts = [os.path.join(directory, n) for n in names if n.startswith("part-") and n.endswith(".parquet")]
    if not parts:
        return FILES_SCHEMA.empty_table()
    if len(parts) > 8:
        with ThreadPoolExecutor(8) as pool:
            tables = list(pool.map(_read_part, parts))
    else:
        tables = [_read_part(p) for p in parts]
    files = pa.concat_tables([t for t in tables if t is not None]).replace_schema_metadata(None)
    if files.num_rows == 0:
        return files
    # A part renamed over at the very moment of listing can appear twice in no case (one rename),
    # but a file id is unique by construction: keep the last row of each, as the store does.
    ids = files.column("file_id").to_pylist()
    if len(set(ids)) != len(ids):
        last = {f: i for i, f in enumerate(ids)}
        files = files.take(sorted(last.values()))
    return files


def _read_part(path: str) -> pa.Table | None:
    try:
        return pq.ParquetFile(path).read()
    except FileNotFoundError:  # compacted away since the listing: its rows are in the merged part
        return None


def _parts_being_replaced(root: str, table: str) -> set[str]:
    """Parts a compaction has merged but not yet deleted (the journal names them): the merged
    part holds their rows, so reading both would double them."""
    try:
        with builtins.open(os.path.join(root, META_DIR, COMPACT_JOURNAL)) as f:
            journal = json.load(f)
    except (FileNotFoundError, ValueError):
        return set()
    if journal.get("table") != table or not os.path.exists(os.path.join(root, table, journal.get("merged", ""))):
        return set()
    return set(journal.get("parts", []))


FILE_IDS_KEY = b"audiokit.file_ids"


def _footer_file_ids(path: str) -> bytes | None:
    """The JSON list of file ids in a part's footer, cut from the footer's bytes without
    decoding the footer: a tenth of the time of `pq.read_schema`, which counts when a table has a part per
    commit (~1,500 after one run over 10^5 files). The key-value pair is Thrift compact: the key
    (length, bytes), the value's field header (0x18) and length (varint), the JSON bytes. Any
    surprise returns None and the caller decodes the footer properly."""
    with builtins.open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 12:
            return None
        f.seek(size - 8)
        tail = f.read(8)
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != b"PAR1" or length > size - 12:
            return None
        f.seek(size - 8 - length)
        footer = f.read(length)
    at = footer.rfind(FILE_IDS_KEY)
    if (
        at < 1
        or footer[at - 1] != len(FILE_IDS_KEY)
        or footer[at + len(FILE_IDS_KEY) : at + len(FILE_IDS_KEY) + 1] != b"\x18"
    ):
        return None
    position, value_length, shift = at + len(FILE_IDS_KEY) + 1, 0, 0
    while position < len(footer):
        byte = footer[position]
        value_length |= (byte & 0x7F) << shift
        position += 1
        shift += 7
        if not byte & 0x80:
            break
    listed = footer[position : position + value_length]
    if len(listed) != value_length or listed[:1] != b"[" or listed[-1:] != b"]":
        return None
    return listed


def _row_groups_of(parquet: pq.ParquetFile, file_id: str, groups_of: dict | None = None) -> list[int]:
    """Row groups whose `file_id` statistics admit `file_id`. When the statistics leave more
    than one (a compacted part: ids are not sorted), the part's file id -> row groups map is
    built from each group's dictionary of ids (the column is dictionary-encoded: a few hundred
    ids per group, not a comparison of every row) and kept in `groups_of` for the next file."""
    meta = parquet.metadata
    column = parquet.schema_arrow.get_field_index("file_id")
    candidates = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(column).statistics
        if stats is None or not stats.has_min_max or stats.min <= file_id <= stats.max:
            candidates.append(rg)
    if len(candidates) <= 1:
        return candidates
    if groups_of is None:
        groups_of = {}
    if not groups_of:
        for rg in range(meta.num_row_groups):
            for chunk in parquet.read_row_group(rg, columns=["file_id"]).column(0).chunks:
                ids = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk.unique()
                for known in ids.to_pylist():
                    groups = groups_of.setdefault(known, [])
                    if not groups or groups[-1] != rg:
                        groups.append(rg)
    return groups_of.get(file_id, [])


def _position(chunk: pa.Array, file_id: str, pc) -> int | None:
    """The dictionary index of `file_id` in a dictionary chunk (None: absent); for a plain
    chunk, 0 when present."""
    if pa.types.is_dictionary(chunk.type):
        where = pc.index(chunk.dictionary, string_scalar(file_id)).as_py()
        return None if where < 0 else where
    return 0 if pc.any(pc.equal(chunk, string_scalar(file_id))).as_py() else None


class ReadCache:
    """What a reader keeps between reads: each compacted part's file id -> row groups map, and
    the last few decoded row groups (a row group holds the rows of many short files: reading
    the files of a part in turn decodes it once, not once per file)."""

    def __init__(self, max_bytes: int = 64 << 20):
        self.groups_of: dict[str, dict[str, list[int]]] = {}
        self.max_bytes = max_bytes
        self._groups: OrderedDict[tuple, pa.Table] = OrderedDict()

    def row_group(self, parquet: pq.ParquetFile, part: str, rg: int, columns: list[str] | None) -> pa.Table:
        key = (part, rg, None if columns is None else tuple(columns))
        group = self._groups.get(key)
        if group is not None:
            self._groups.move_to_end(key)
            return group
        group = parquet.read_row_group(rg, columns=columns)
        self._groups[key] = group
        while len(self._groups) > 1 and sum(t.nbytes for t in self._groups.values()) > self.max_bytes:
            self._groups.popitem(last=False)
        return group


def _iter_file_rows(
    part: str, file_id: str, columns: list[str] | None, cache: ReadCache | None = None
) -> Iterator[pa.Table]:
    import pyarrow.compute as pc

    parquet = pq.ParquetFile(part, read_dictionary=["file_id"])
    groups_of = None if cache is None else cache.groups_of.setdefault(part, {})
    for rg in _row_groups_of(parquet, file_id, groups_of):
        group = (
            parquet.read_row_group(rg, columns=columns)
            if cache is None
            else cache.row_group(parquet, part, rg, columns)
        )
        pieces = []
        for chunk in group.column("file_id").chunks:
            if pa.types.is_dictionary(chunk.type):
                where = _position(chunk, file_id, pc)
                # Dictionary indices are never negative: -1 selects no row.
                pieces.append(pc.equal(chunk.indices, int_scalar(-1 if where is None else where, chunk.indices.type)))
            else:
                pieces.append(pc.equal(chunk, string_scalar(file_id)))
        rows = group.filter(pa.chunked_array(pieces, type=pa.bool_()))
        index = rows.schema.get_field_index("file_id")
        yield rows.set_column(
            index, rows.schema.field(index).with_type(pa.string()), rows.column(index).cast(pa.string())
        )


def _read_file_rows(part: str, file_id: str, columns: list[str] | None, cache: ReadCache | None = None) -> pa.Table:
    pieces = list(_iter_file_rows(part, file_id, columns, cache))
    if not pieces:
        schema = pq.read_schema(part).remove_metadata()
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)
    return pa.concat_tables(pieces).replace_schema_metadata(None)


__all__ = ["DatasetReader", "TableInfo", "feature_columns", "open", "table_kind", "to_matrix"]
