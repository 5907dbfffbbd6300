"""The library behind the CLI: `extract(...)` and `info(...)`."""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audiokit import __version__
from audiokit.config import SCHEMA_VERSION, Config, load_config
from audiokit.discover import AudioFile, discover
from audiokit.errors import ConfigError, Interrupted, OutputError
from audiokit.store.dataset import Dataset, FileResult

COMMIT_EVERY_FILES = 64
COMMIT_EVERY_SECONDS = 5.0


@dataclass
class RunSummary:
    files_seen: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    pruned: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)  # first few failures, for people
    # First few problems with the inputs themselves (a missing INPUT, an unreadable directory):
    # they are not files, so they have no row, but a script must be able to see them.
    warnings: list[str] = field(default_factory=list)
    output: str = ""
    stopped: str | None = None  # "fail-fast", or the signal that stopped the run
    signal: int | None = None
    error: str | None = None  # why the run could not proceed (exit 3)

    @property
    def exit_status(self) -> int:
        """What `audiokit extract` returns: 128+N after signal N, 3 when the output failed,
        1 when some file failed, else 0."""
        if self.signal is not None:
            return 128 + self.signal
        if self.error is not None:
            return 3
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "processed": self.processed,
            "skipped": self.skipped,
            "failed": self.failed,
            "pruned": self.pruned,
            "audio_s": round(self.audio_s, 3),
            "wall_s": round(self.wall_s, 3),
            "tables": dict(self.tables),
            "output": self.output,
            "errors": self.errors,
            "warnings": self.warnings,
            "stopped": self.stopped,
            "error": self.error,
            "exit_status": self.exit_status,
        }


class Progress:
    """Callbacks a front end implements to show progress; the default shows nothing."""

    def start(self, files: list[AudioFile]) -> None: ...

    def advance(self, file: AudioFile, result: FileResult) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


def extract(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    files_from: Iterable[str] = (),
    config: Config | None = None,
    config_path: str | None = None,
    extractors: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    workers: int | None = None,
    backend: str = "numpy",
    device: str = "auto",
    force: bool = False,
    prune: bool = False,
    fail_fast: bool = False,
    retry_failed: bool = True,
    progress: Progress | None = None,
) -> RunSummary:
    """Extract the configured features of every audio file under `inputs` into dataset `out`.

    `inputs` is one path or a list of directories (walked recursively), files and globs; each
    must exist (a glob may match nothing). `files_from` lists more files, which may have gone
    since the list was made (a warning each). `config_path` is a TOML file or the name of a
    shipped config (`default`, `speech`, `music`); `extractors` replaces its chain and
    `overrides` are `SECTION.PARAM=VALUE` strings, as `--set`.

    Raises ConfigError (bad arguments or config, a missing INPUT, an output directory that is
    not a dataset; nothing written), OutputError (output locked or not writable) and
    Interrupted (SIGINT/SIGTERM, after committing finished files); the last two carry the
    run's `summary`. Per-file problems never raise: they are rows with status `error`,
    counted in `failed`.

        >>> summary = audiokit.extract("recordings/", "features/", extractors=["mfcc"])
        >>> summary.exit_status, summary.tables
    """
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    progress = progress or Progress()
    if config is None:
        config = load_config(config_path, extractors=extractors, overrides=overrides)
    backend, device = _resolve_backend(backend, device)
    inputs = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    listed = [os.fspath(i) for i in files_from]
    out = os.fspath(out)
    if not inputs and not listed:
        raise ConfigError("no INPUT given: name directories, files or globs (or use --files-from)")
    for item in inputs:
        if not os.path.lexists(item) and not glob.has_magic(item):
            raise ConfigError(f"INPUT not found: {item}")
    check_output(out)

    warnings: list[str] = []

    def on_warning(message: str) -> None:
        warnings.append(message)
        progress.warn(message)

    discover_options = {"include": include, "exclude": exclude, "on_warning": on_warning}
    files = discover(inputs + listed, extensions=config.input.extensions, **discover_options)
    if not files:
        on_warning("no audio files found in the INPUTs (in directories, audio is recognised by [input] extensions)")
    if prune and (not files or any(m.startswith(("cannot read", "no file matches")) for m in warnings)):
        # An unmounted disk or a typo must not empty a dataset built over months.
        raise ConfigError("--prune refused: an INPUT is missing or no audio was found, so every row would go")
    summary = RunSummary(files_seen=len(files), output=os.path.abspath(out), warnings=warnings)
    try:
        dataset = Dataset(out, version=__version__).open()
    except OutputError as exc:
        summary.error = str(exc)
        exc.summary = summary
        raise
    _warn_moved_roots(files, dataset.files, on_warning)
    try:
        from audiokit.pipeline import OUTPUT_FAILURE, FileProcessor, plan

        work = plan(files, config, dataset.files, dataset.locations, force=force, retry_failed=retry_failed)
        summary.skipped = len(work.skipped)
        resolved = config.to_dict()
        if prune:
            summary.pruned = dataset.prune({f.file_id for f in files}, config=resolved, config_hash=config.config_hash)
        schemas = {}
        if work.tasks:
            schemas = FileProcessor(config, staging_path=None).table_schemas
        by_id = {t.file.file_id: t.file for t in work.tasks}
        pending: list[FileResult] = []
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal last_commit
            dataset.commit(pending, schemas=schemas, config=resolved, config_hash=config.config_hash)
            for r in pending:
                for table, rows in r.rows.items():
                    summary.tables[table] = summary.tables.get(table, 0) + rows
            pending.clear()
            last_commit = time.monotonic()

        from audiokit.engines.local import LocalEngine, default_workers

        engine_options = {
            "workers": workers or default_workers(),
            "staging_path": dataset.staging_path,
            "device": device,
            "log_path": os.path.join(dataset.meta_dir, "workers.log"),
        }
        if backend == "torch":
            from audiokit.engines.batched import BatchedEngine

            engine = BatchedEngine(config, **engine_options)
        else:
            engine = LocalEngine(config, backend=backend, **engine_options)

        output_failures: list[str] = []

        def on_result(result: FileResult) -> None:
            row = result.row
            if row["error_kind"] == OUTPUT_FAILURE:
                # The output, not the file, failed: leave the file for the next run and stop.
                output_failures.append(row["error"])
                engine.stop()
                return
            summary.processed += 1
            if row["status"] == "ok":
                summary.audio_s += row["duration_s"] or 0.0
            else:
                summary.failed += 1
                if len(summary.errors) < 20:
                    summary.errors.append({"path": row["path"], "error_kind": row["error_kind"], "error": row["error"]})
                if fail_fast:
                    summary.stopped = "fail-fast"
                    engine.stop()
            pending.append(result)
            progress.advance(by_id[result.file_id], result)
            if len(pending) >= COMMIT_EVERY_FILES:
                commit()

        def on_tick() -> None:
            # Finished files become visible within seconds, even while a long file is running.
            if pending and time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
                commit()

        progress.start([t.file for t in work.tasks])
        stop_signal: list[int] = []
        with _stop_on_signals(lambda signum: (stop_signal.append(signum), engine.stop())):
            try:
                engine.run(work.tasks, on_result, on_tick)
            finally:
                try:
                    commit()
                finally:
                    progress.close()
        summary.wall_s = time.monotonic() - started
        summary.warnings = warnings[:20]
        if output_failures:
            summary.error = f"{output_failures[0]}; every file committed before is intact"
            raise OutputError(summary.error, summary=summary)
        if stop_signal:
            summary.stopped = signal.Signals(stop_signal[0]).name
            summary.signal = stop_signal[0]
        dataset.write_manifest(
            {
                "schema_version": SCHEMA_VERSION,
                "audiokit_version": __version__,
                "config": resolved,
                "config_hash": config.config_hash,
                "tables": sorted(set(dataset.tables())),
                "updated": dt.datetime.now(dt.timezone.utc).isoformat(),
            }
        )
        dataset.append_run(
            {
                "started": started_at.isoformat(),
                "ended": dt.datetime.now(dt.timezone.utc).isoformat(),
                "args": sys.argv[1:],
                "inputs": inputs,
                **summary.to_dict(),
            }
        )
        if stop_signal:
            raise Interrupted(stop_signal[0], summary=summary)
        return summary
    except OutputError as exc:
        if exc.summary is None:
            summary.error = str(exc)
            exc.summary = summary
        raise
    finally:
        dataset.close()


def check_output(out: str) -> None:
    """OUT must be a new path, an empty directory or an audiokit dataset: audiokit never writes
    among someone else's files (a stray `files/keep.csv` would also break readers)."""
    from audiokit.store.schema import META_DIR

    if not os.path.lexists(out):
        return
    if not os.path.isdir(out):
        raise ConfigError(f"output {out} exists and is not a directory")
    try:
        entries = os.listdir(out)
    except OSError as exc:
        raise ConfigError(f"cannot read output directory {out}: {exc.strerror or exc}") from None
    if entries and META_DIR not in entries:
        raise ConfigError(
            f"output {out} is neither empty nor an audiokit dataset (no {META_DIR}/ inside); "
            "choose a new or empty directory"
        )


def _warn_moved_roots(files: list[AudioFile], state: dict[str, dict], warn: Callable[[str], None]) -> None:
    """A file already in the dataset under another relpath (found from another INPUT root, as
    `extract in` then `extract in/speech`) gets a second file_id: ids follow relative paths."""
    by_path = {row["path"]: row for row in state.values()}
    overlaps = [(f, by_path[f.display_path]) for f in files if f.display_path in by_path and by_path[f.display_path]["file_id"] != f.file_id]
    if overlaps:
        f, row = overlaps[0]
        more = f" (and {len(overlaps) - 1} more)" if len(overlaps) > 1 else ""
        warn(
            f"{f.display_path} is already in the dataset as {row['relpath']!r} and is now found as "
            f"{f.display_relpath!r}{more}: file ids follow the path relative to the INPUT, so it gets a "
            "second id and second rows; run from the same INPUT root as before to avoid it"
        )


def _resolve_backend(backend: str, device: str) -> tuple[str, str]:
    if backend not in ("numpy", "torch"):
        raise ConfigError(f"--backend {backend!r}; choose from: numpy, torch")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}; choose from: auto, cpu, cuda")
    if backend == "numpy":
        if device == "cuda":
            raise ConfigError("--device cuda needs --backend torch")
        return backend, "cpu"
    from audiokit.engines.batched import resolve_torch_device

    try:
        return backend, resolve_torch_device(device)
    except ImportError:
        raise ConfigError(
            "--backend torch needs PyTorch, which is not installed: pip install 'audiokit[torch]'"
            " (or use --backend numpy)"
        ) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@contextlib.contextmanager
def _stop_on_signals(handler: Callable[[int], None]):
    """SIGINT/SIGTERM ask the run to stop after the current commit (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def on_signal(signum, frame):
        handler(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _dataset_root(out: str) -> str:
    from audiokit.store.schema import META_DIR

    root = os.path.abspath(out)
    if not os.path.isdir(os.path.join(root, META_DIR)):
        raise ConfigError(f"{out} is not an audiokit dataset (no {META_DIR}/ inside)")
    return root


def _table_parts(root: str) -> dict[str, list[str]]:
    from audiokit.store.schema import META_DIR

    out = {}
    for name in sorted(os.listdir(root)):
        directory = os.path.join(root, name)
        if name != META_DIR and os.path.isdir(directory):
            out[name] = sorted(os.path.join(directory, p) for p in os.listdir(directory) if p.endswith(".parquet"))
    return out


def info(out: str) -> dict:
    """What a dataset holds: files ok/failed, hours, tables with row counts, config, last runs.

    Reads the `files` table's status, error kind and duration columns and, for every other
    table, only the Parquet footers."""
    import json

    import pyarrow.parquet as pq

    from audiokit.store.dataset import read_files_table
    from audiokit.store.schema import META_DIR

    root = _dataset_root(out)
    files = read_files_table(root, columns=["status", "error_kind", "duration_s"]).to_pydict()
    ok = [status == "ok" for status in files["status"]]
    errors: dict[str, int] = {}
    for good, kind in zip(ok, files["error_kind"]):
        if not good:
            errors[kind] = errors.get(kind, 0) + 1
    hours = sum(d or 0.0 for good, d in zip(ok, files["duration_s"]) if good) / 3600.0
    tables = {}
    for name, parts in _table_parts(root).items():
        tables[name] = {
            "parts": len(parts),
            "rows": sum(pq.ParquetFile(p).metadata.num_rows for p in parts),
            "bytes": sum(os.path.getsize(p) for p in parts),
        }
    manifest_path = os.path.join(root, META_DIR, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    runs_path = os.path.join(root, META_DIR, "runs.jsonl")
    runs = []
    if os.path.exists(runs_path):
        with open(runs_path) as f:
            runs = [json.loads(line) for line in f if line.strip()][-5:]
    return {
        "output": root,
        "files": len(ok),
        "ok": sum(ok),
        "failed": len(ok) - sum(ok),
        "errors_by_kind": errors,
        "hours": round(hours, 4),
        "tables": tables,
        "config": manifest.get("config"),
        "config_hash": manifest.get("config_hash"),
        "audiokit_version": manifest.get("audiokit_version"),
        "schema_version": manifest.get("schema_version"),
        "last_runs": [
            {k: r.get(k) for k in ("started", "ended", "processed", "skipped", "failed", "exit_status", "stopped")}
            for r in runs
        ],
    }


def failures(out: str) -> list[dict]:
    """Every file that failed: `path`, `relpath`, `error_kind`, `error`, sorted by path."""
    from audiokit.store.dataset import read_files_table

    columns = ["path", "relpath", "status", "error_kind", "error"]
    files = read_files_table(_dataset_root(out), columns=columns).to_pydict()
    failed = [
        {"path": p, "relpath": r, "error_kind": k, "error": e}
        for p, r, status, k, e in zip(*(files[c] for c in columns))
        if status != "ok"
    ]
    return sorted(failed, key=lambda f: f["path"])


def file_info(out: str, path: str) -> dict:
    """One file's `files` row and how many rows each table holds for it. `path` is the file's
    path (as given to extract, or absolute), its relpath or its file_id."""
    import pyarrow.parquet as pq

    from audiokit.discover import printable
    from audiokit.store.dataset import read_files_table
    from audiokit.store.schema import FILES_TABLE, part_file_ids

    root = _dataset_root(out)
    files = read_files_table(root)
    keys = files.select(["path", "relpath", "file_id"]).to_pydict()
    absolute = printable(os.path.abspath(path))
    found = [
        i
        for i, (p, r, f) in enumerate(zip(keys["path"], keys["relpath"], keys["file_id"]))
        if path in (p, r, f) or p == absolute
    ]
    if not found:
        raise ConfigError(f"{path} is not in the dataset {out} (give its path, relpath or file_id)")
    if len(found) > 1:
        listed = ", ".join(keys["path"][i] for i in found[:5])
        raise ConfigError(f"{path} matches {len(found)} files ({listed}); give the path or file_id")
    one = files.slice(found[0], 1)
    # pyarrow converts tz-aware timestamps through pandas (0.2 s to import): do it by hand.
    ms = one.column("processed_at").cast("int64")[0].as_py()
    row = one.drop_columns(["processed_at"]).to_pylist()[0]
    row["processed_at"] = None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat()
    counts = {}
    for name, parts in _table_parts(root).items():
        if name == FILES_TABLE:
            continue
        counts[name] = 0
        for part in parts:
            ids = part_file_ids(pq.read_schema(part).metadata)
            if ids is None or row["file_id"] in ids:
                counts[name] += _rows_of(part, row["file_id"])
    return {"file": row, "tables": counts}


def _rows_of(part: str, file_id: str) -> int:
    """Rows of `file_id` in a part, from its file_id column read as a dictionary."""
    import numpy as np
    import pyarrow.parquet as pq

    column = pq.ParquetFile(part, read_dictionary=["file_id"]).read(columns=["file_id"]).column(0)
    rows = 0
    for chunk in column.chunks:
        names = chunk.dictionary.to_pylist()
        if file_id in names:
            # From the index buffer: Arrow's own numpy conversion imports pandas (0.2 s).
            indices = chunk.indices
            width = indices.type.bit_width // 8
            values = np.frombuffer(indices.buffers()[1], dtype=f"<i{width}", count=indices.offset + len(indices))
            rows += int(np.count_nonzero(values[indices.offset :] == names.index(file_id)))
    return rows
