"""The dataset directory and its commit protocol.

Layout: `files/part-*.parquet` (one row per input file: the index, the run log and the state),
`<table>/part-*.parquet` per extractor, `_audiokit/` for the manifest, the lock, the run log and
the staging area where workers write a file's rows before they are committed.

Commit protocol (per batch of finished files): every table is updated by whole-part renames —
rows of files seen before are replaced inside the part that held them (rewrite + rename over it,
so a reader sees the old part or the new one), rows of new files go to a new part — feature
tables first, `files` last: the `files` rename is the commit point. A file is done when its
`files` row carries its current fingerprint, so a crash anywhere leaves at worst rows that the
next run replaces (same file) or removes on open (file never committed).

Compaction (on open): a nightly run adds a small part per table, so once a table holds
`COMPACT_AT_PARTS` parts under `OWN_PART_BYTES`, they are merged into parts of about
`COMPACT_TARGET_BYTES` (only parts with the same schema and config). A journal in `_audiokit/`
names the merged part and the parts it replaces before the merged part appears; the old parts
are deleted after it. A run that dies in between finishes the deletions when the next run
opens the dataset, so no row is ever lost and duplicates never outlive a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from audiokit.errors import OutputError
from audiokit.store.arrays import strings, table_from_rows
from audiokit.store.lock import OutputLock
from audiokit.store.parts import TMP_SUFFIX, PartWriter, fsync_dir, iter_batches, iter_staged, new_part_name
from audiokit.store.schema import FILES_SCHEMA, FILES_TABLE, META_DIR, part_file_ids, part_metadata

OWN_PART_BYTES = 4 << 20  # a staged file at least this big becomes a part of its own
COMPACT_AT_PARTS = 32  # small parts (under OWN_PART_BYTES) in a table before they are merged
COMPACT_TARGET_BYTES = 64 << 20
COMPACT_JOURNAL = "compacting.json"
STATE_COLUMNS = [name for name in FILES_SCHEMA.names if name != "processed_at"]


@dataclass
class FileResult:
    """What a worker hands the writer for one file."""

    file_id: str
    row: dict  # the `files` row
    # table -> its rows: a staged Arrow IPC file, or the rows themselves (see StageWriter)
    staged: dict[str, str | pa.Table] = field(default_factory=dict)
    clear_tables: tuple[str, ...] = ()  # tables whose old rows of this file are replaced
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows staged


class Dataset:
    def __init__(self, root: str, *, version: str):
        self.root = os.path.abspath(root)
        self.meta_dir = os.path.join(self.root, META_DIR)
        self.staging_dir = os.path.join(self.meta_dir, "staging")
        self.version = version
        self.files: dict[str, dict] = {}  # file_id -> files row
        # table -> file_id -> part path holding that file's rows
        self.locations: dict[str, dict[str, str]] = {}
        self._lock = OutputLock(os.path.join(self.meta_dir, "lock"))

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> Dataset:
        try:
            os.makedirs(self.staging_dir, exist_ok=True)
            probe = os.path.join(self.meta_dir, f".probe{TMP_SUFFIX}")
            with open(probe, "wb") as f:
                f.write(b"x")
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"output {self.root} is not writable: {exc.strerror or exc}") from None
        self._lock.acquire()
        try:
            self._remove_leftovers()
            self._finish_compaction()
            self._load()
            self._remove_orphans()
            self._compact()
        except BaseException:
            self._lock.release()
            raise
        return self

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> Dataset:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def tables(self) -> list[str]:
        return sorted(self.locations)

    def _table_dirs(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(
            name
            for name in os.listdir(self.root)
            if name != META_DIR and not name.startswith(".") and os.path.isdir(os.path.join(self.root, name))
        )

    def _remove_leftovers(self) -> None:
        """Temporary files of a run that died: never part of the dataset, delete them."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        os.makedirs(self.staging_dir, exist_ok=True)
        for table in self._table_dirs():
            directory = os.path.join(self.root, table)
            for name in os.listdir(directory):
                if name.endswith(TMP_SUFFIX):
                    os.unlink(os.path.join(directory, name))

    def _parts(self, table: str) -> list[str]:
        directory = os.path.join(self.root, table)
        if not os.path.isdir(directory):
            return []
        return sorted(
            os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("part-") and n.endswith(".parquet")
        )

    def _load(self) -> None:
        self.files = {}
        self.locations = {}
        for table in self._table_dirs():
            where: dict[str, str] = {}
            for part in self._parts(table):
                if table == FILES_TABLE:
                    # The state needs no timestamps (and converting tz-aware ones imports pandas).
                    for row in pq.ParquetFile(part).read(columns=STATE_COLUMNS).to_pylist():
                        self.files[row["file_id"]] = row
                        where[row["file_id"]] = part
                else:
                    for file_id in _file_ids_of(part):
                        where[file_id] = part
            self.locations[table] = where

    def _remove_orphans(self) -> None:
        """Rows of files with no `files` row (a batch that died before its commit point)."""
        for table, where in self.locations.items():
            if table == FILES_TABLE:
                continue
            orphans = [f for f in where if f not in self.files]
            if orphans:
                self._replace(table, {f: None for f in orphans}, schema=None, config=None)

    # -- compaction --------------------------------------------------------------------------

    def _compact(self) -> None:
        for table in self._table_dirs():
            small = [p for p in self._parts(table) if os.path.getsize(p) < OWN_PART_BYTES]
            if len(small) < COMPACT_AT_PARTS:
                continue
            groups: dict[tuple[bytes, bytes], list[str]] = {}
            for part in small:
                schema = pq.read_schema(part)
                key = (schema.remove_metadata().serialize().to_pybytes(), (schema.metadata or {}).get(b"audiokit.config_hash", b""))
                groups.setdefault(key, []).append(part)
            for parts in groups.values():
                chunk, size = [], 0
                for part in parts + [None]:
                    if part is None or (chunk and size + os.path.getsize(part) > COMPACT_TARGET_BYTES):
                        if len(chunk) > 1 and not self._merge(table, chunk):
                            return  # no room to merge: the parts stay as they are, still valid
                        chunk, size = [], 0
                    if part is not None:
                        chunk.append(part)
                        size += os.path.getsize(part)

    def _merge(self, table: str, parts: list[str]) -> bool:
        """One part with the rows of `parts`, which then go (see the module docstring).
        False when the merged part could not be written (nothing changed then)."""
        directory = os.path.join(self.root, table)
        path = os.path.join(directory, new_part_name())
        schema = pq.read_schema(parts[0])
        file_ids = [f for part in parts for f in _file_ids_of(part)]
        meta = dict(schema.metadata or {})
        meta[b"audiokit.file_ids"] = json.dumps(sorted(file_ids)).encode()
        journal = {"table": table, "merged": os.path.basename(path), "parts": [os.path.basename(p) for p in parts]}
        writer = PartWriter(path, schema.remove_metadata().with_metadata(meta))
        try:
            self._write_json(os.path.join(self.meta_dir, COMPACT_JOURNAL), journal)
            for part in parts:
                for batch in iter_batches(part):
                    writer.write(_conform(batch, writer.schema.remove_metadata()))
            writer.commit()
        except (OSError, OutputError):
            writer.abort()
            return False  # the journal names a part that does not exist: the next open drops it
        # From here on the old parts must go before anything else touches this table.
        self._finish_compaction()
        where = self.locations.setdefault(table, {})
        for file_id in file_ids:
            where[file_id] = path
        return True

    def _finish_compaction(self) -> None:
        """Complete (or forget) the merge the journal describes."""
        journal_path = os.path.join(self.meta_dir, COMPACT_JOURNAL)
        try:
            with open(journal_path) as f:
                journal = json.load(f)
        except FileNotFoundError:
            return
        try:
            directory = os.path.join(self.root, journal["table"])
            if os.path.exists(os.path.join(directory, journal["merged"])):
                for name in journal["parts"]:
                    _unlink_quiet(os.path.join(directory, name))
                fsync_dir(directory)
            # Else the merged part never appeared: the old parts are the data (its temporary
            # file went with the other leftovers).
            os.unlink(journal_path)
            fsync_dir(self.meta_dir)
        except OSError as exc:
            raise OutputError(f"cannot finish compacting {self.root}: {exc.strerror or exc}") from None

    # -- committing --------------------------------------------------------------------------

    def staging_path(self, file_id: str, table: str) -> str:
        return os.path.join(self.staging_dir, f"{file_id}.{table}.{os.getpid()}.{time.monotonic_ns()}.arrow")

    def commit(self, results: list[FileResult], *, schemas: dict[str, pa.Schema], config: dict, config_hash: str) -> None:
        """Make a batch of finished files part of the dataset (see the module docstring)."""
        if not results:
            return
        try:
            tables = sorted({t for r in results for t in (*r.staged, *r.clear_tables)})
            for table in tables:
                sources = {}
                for r in results:
                    if table in r.staged:
                        sources[r.file_id] = r.staged[table]
                    elif table in r.clear_tables:
                        sources[r.file_id] = None
                if table in schemas:
                    self._replace(table, sources, schema=schemas[table], config=(config, config_hash))
                else:
                    # A table outside this run's chain only loses the rows of changed files:
                    # its parts keep their own schema and the config that wrote them.
                    self._replace(table, sources, schema=None, config=None)
            rows = table_from_rows([r.row for r in results], FILES_SCHEMA)
            files_sources = {r.file_id: rows.slice(i, 1) for i, r in enumerate(results)}
            self._replace(FILES_TABLE, files_sources, schema=FILES_SCHEMA, config=(config, config_hash))
        except OSError as exc:
            raise OutputError(f"cannot write to {self.root}: {exc.strerror or exc}") from None
        for r in results:
            self.files[r.file_id] = r.row
            for source in r.staged.values():
                if isinstance(source, str):
                    _unlink_quiet(source)
        pa.default_memory_pool().release_unused()  # keep the writer's footprint flat

    def prune(self, keep: set[str], *, config: dict, config_hash: str) -> int:
        """Remove every row of files not in `keep`; returns how many files went."""
        gone = [f for f in self.files if f not in keep]
        if not gone:
            return 0
        for table, where in list(self.locations.items()):
            drop = {f: None for f in gone if f in where}
            if drop:
                self._replace(table, drop, schema=None, config=(config, config_hash))
        for f in gone:
            self.files.pop(f, None)
        return len(gone)

    def _replace(self, table: str, sources: dict, *, schema: pa.Schema | None, config) -> None:
        """Give each file in `sources` exactly the rows of its source (None: no rows) in `table`."""
        where = self.locations.setdefault(table, {})
        directory = os.path.join(self.root, table)
        os.makedirs(directory, exist_ok=True)
        by_part: dict[str, list[str]] = {}
        new_files = []
        for file_id in sources:
            if file_id in where:
                by_part.setdefault(where[file_id], []).append(file_id)
            elif sources[file_id] is not None:
                new_files.append(file_id)

        for part, replaced in sorted(by_part.items()):
            old_schema = pq.read_schema(part)
            out_schema = (schema or old_schema).remove_metadata()
            kept = [f for f in (part_file_ids(old_schema.metadata) or []) if f not in set(replaced)]
            added = [f for f in replaced if sources[f] is not None]
            file_ids = kept + added
            if not file_ids:
                os.unlink(part)
            else:
                meta_config = config or _config_from(old_schema)
                writer = PartWriter(part, out_schema.with_metadata(self._metadata(meta_config, file_ids)))
                try:
                    import pyarrow.compute as pc  # only re-runs rewrite parts (30 ms to import)

                    drop = strings(replaced)
                    for batch in iter_batches(part):
                        mask = pc.invert(pc.is_in(batch.column("file_id"), value_set=drop))
                        writer.write(_conform(batch.filter(mask), out_schema))
                    for f in added:
                        _copy_source(writer, sources[f], out_schema)
                    writer.commit()
                except BaseException:
                    writer.abort()
                    raise
            for f in replaced:
                where.pop(f, None)
            for f in added:
                where[f] = part

        # A large staged file (a long recording) becomes a part of its own; small ones are
        # gathered into one part per batch.
        large = [f for f in new_files if isinstance(sources[f], str) and os.path.getsize(sources[f]) >= OWN_PART_BYTES]
        groups = [[f] for f in large] + [[f for f in new_files if f not in large]]
        for group in groups:
            if not group:
                continue
            path = os.path.join(directory, new_part_name())
            writer = PartWriter(path, schema.remove_metadata().with_metadata(self._metadata(config, group)))
            try:
                for f in group:
                    _copy_source(writer, sources[f], schema.remove_metadata())
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            for f in group:
                where[f] = path

    def _metadata(self, config, file_ids: list[str]) -> dict[bytes, bytes]:
        resolved, config_hash = config
        return part_metadata(config=resolved, config_hash=config_hash, version=self.version, file_ids=file_ids)

    # -- manifest and run log ----------------------------------------------------------------

    def write_manifest(self, manifest: dict) -> None:
        self._write_json(os.path.join(self.meta_dir, "manifest.json"), manifest)

    def _write_json(self, path: str, data: dict) -> None:
        tmp = path + TMP_SUFFIX
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True, default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(self.meta_dir)
        except OSError as exc:
            _unlink_quiet(tmp)
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None

    def append_run(self, record: dict) -> None:
        try:
            with open(os.path.join(self.meta_dir, "runs.jsonl"), "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot append to the run log: {exc.strerror or exc}") from None


def _config_from(schema: pa.Schema):
    meta = schema.metadata or {}
    return (json.loads(meta.get(b"audiokit.config", b"{}")), meta.get(b"audiokit.config_hash", b"").decode())


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    return pa.RecordBatch.from_arrays([batch.column(f.name) for f in schema], schema=schema)


def _copy_source(writer: PartWriter, source, schema: pa.Schema) -> None:
    """Rows from a table (the `files` row, a file's small staged rows), or from a staged file."""
    if isinstance(source, pa.Table):
        writer.write(source if source.schema.equals(schema) else source.cast(schema))
    else:
        for batch in iter_staged(source):
            writer.write(_conform(batch, schema))


def _file_ids_of(part: str) -> list[str]:
    ids = part_file_ids(pq.read_schema(part).metadata)
    if ids is None:
        ids = pq.ParquetFile(part).read(columns=["file_id"]).column(0).unique().to_pylist()
    return ids


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_files_table(root: str, columns: list[str] | None = None) -> pa.Table:
    """The committed `files` table (or only `columns` of it)."""
    directory = os.path.join(root, FILES_TABLE)
    parts = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".parquet")) if os.path.isdir(directory) else []
    if not parts:
        empty = FILES_SCHEMA.empty_table()
        return empty.select(columns) if columns else empty
    return pa.concat_tables([pq.ParquetFile(p).read(columns=columns) for p in parts])
