"""The library behind the CLI: `extract(...)` and `info(...)`."""

from __future__ import annotations

import contextlib
import datetime as dt
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
    stopped: str | None = None

    @property
    def exit_status(self) -> int:
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
            "exit_status": self.exit_status,
        }


class Progress:
    """Callbacks a front end implements to show progress; the default shows nothing."""

    def start(self, files: list[AudioFile]) -> None: ...

    def advance(self, file: AudioFile, result: FileResult) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


def extract(
    inputs: Iterable[str],
    out: str,
    *,
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

    Raises ConfigError (bad config; nothing written), OutputError (output locked or not
    writable) and Interrupted (SIGINT/SIGTERM, after committing finished files). Per-file
    problems never raise: they are rows with status `error`, counted in `failed`.
    """
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    progress = progress or Progress()
    if config is None:
        config = load_config(config_path, extractors=extractors, overrides=overrides)
    backend, device = _resolve_backend(backend, device)
    inputs = list(inputs)
    if not inputs:
        raise ConfigError("no INPUT given: name directories, files or globs (or use --files-from)")

    warnings: list[str] = []

    def on_warning(message: str) -> None:
        warnings.append(message)
        progress.warn(message)

    files = discover(inputs, extensions=config.input.extensions, include=include, exclude=exclude, on_warning=on_warning)
    if prune and (not files or any(m.startswith(("cannot read", "no file matches")) for m in warnings)):
        # An unmounted disk or a typo must not empty a dataset built over months.
        raise ConfigError("--prune refused: an INPUT is missing or no audio was found, so every row would go")
    summary = RunSummary(files_seen=len(files), output=os.path.abspath(out), warnings=warnings[:20])
    dataset = Dataset(out, version=__version__).open()
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
        if output_failures:
            raise OutputError(f"{output_failures[0]}; every file committed before is intact")
        if stop_signal:
            summary.stopped = signal.Signals(stop_signal[0]).name
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
            raise Interrupted(stop_signal[0])
        return summary
    finally:
        dataset.close()


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


def info(out: str) -> dict:
    """What a dataset holds: files ok/failed, hours, tables with row counts, config, last runs."""
    import json

    import pyarrow.parquet as pq

    from audiokit.store.dataset import read_files_table
    from audiokit.store.schema import META_DIR

    root = os.path.abspath(out)
    if not os.path.isdir(os.path.join(root, META_DIR)):
        raise ConfigError(f"{out} is not an audiokit dataset (no {META_DIR}/ inside)")
    files = read_files_table(root).to_pylist()
    ok = [f for f in files if f["status"] == "ok"]
    tables = {}
    for name in sorted(os.listdir(root)):
        directory = os.path.join(root, name)
        if name == META_DIR or not os.path.isdir(directory):
            continue
        parts = [os.path.join(directory, p) for p in os.listdir(directory) if p.endswith(".parquet")]
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
    errors: dict[str, int] = {}
    for f in files:
        if f["status"] != "ok":
            errors[f["error_kind"]] = errors.get(f["error_kind"], 0) + 1
    return {
        "output": root,
        "files": len(files),
        "ok": len(ok),
        "failed": len(files) - len(ok),
        "errors_by_kind": errors,
        "hours": round(sum(f["duration_s"] or 0.0 for f in ok) / 3600.0, 4),
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
