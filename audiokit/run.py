"""One run of `audiokit extract`: discover → plan → engine → committer → manifest.

`Run.execute()` is everything a run does, in order. The engine only schedules the per-file
stages (`audiokit.stages`); the `Committer` is the outbox it reports to: it commits finished
files in batches (every `COMMIT_EVERY_FILES`, or `COMMIT_EVERY_SECONDS` while a slow file holds
a worker), keeps the summary and progress, and stops the engine on `--fail-fast` or when the
output fails. The driver process is the only writer, whichever engine runs the files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from audiokit import __version__
from audiokit.config import SCHEMA_VERSION, Config
from audiokit.discover import AudioFile, discover
from audiokit.engines.base import Engine, Outcome, OutputFailed, create_engine
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
            "warnings": self.warnings[:20],
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


class Committer:
    """The engine's outbox: commits outcomes in batches and keeps the run's summary."""

    def __init__(self, dataset: Dataset, config: Config, schemas: dict, summary: RunSummary, *,
                 files: dict[str, AudioFile], progress: Progress, fail_fast: bool):
        self.dataset, self.config, self.schemas, self.summary = dataset, config, schemas, summary
        self.files, self.progress, self.fail_fast = files, progress, fail_fast
        self.resolved = config.to_dict()
        self.engine: Engine | None = None
        self.pending: list[FileResult] = []
        self.last_commit = time.monotonic()
        self.output_failure: str | None = None

    def put(self, outcome: Outcome) -> None:
        summary = self.summary
        if isinstance(outcome, OutputFailed):
            # The output, not the file, failed: leave the file for the next run and stop.
            if self.output_failure is None:
                self.output_failure = outcome.message
            self.engine.stop()
            return
        row = outcome.row
        summary.processed += 1
        if row["status"] == "ok":
            summary.audio_s += row["duration_s"] or 0.0
        else:
            summary.failed += 1
            if len(summary.errors) < 20:
                summary.errors.append({"path": row["path"], "error_kind": row["error_kind"], "error": row["error"]})
            if self.fail_fast:
                summary.stopped = "fail-fast"
                self.engine.stop()
        self.pending.append(outcome)
        self.progress.advance(self.files[outcome.file_id], outcome)
        if len(self.pending) >= COMMIT_EVERY_FILES:
            self.commit()

    def tick(self) -> None:
        # Finished files become visible within seconds, even while a long file is running.
        if self.pending and time.monotonic() - self.last_commit > COMMIT_EVERY_SECONDS:
            self.commit()

    def commit(self) -> None:
        self.dataset.commit(self.pending, schemas=self.schemas, config=self.resolved, config_hash=self.config.config_hash)
        for result in self.pending:
            for table, rows in result.rows.items():
                self.summary.tables[table] = self.summary.tables.get(table, 0) + rows
        self.pending.clear()
        self.last_commit = time.monotonic()


@dataclass
class Run:
    """Everything one `extract` needs, resolved and validated (see `audiokit.api.extract`)."""

    inputs: list[str]
    listed: list[str]
    out: str
    config: Config
    include: tuple = ()
    exclude: tuple = ()
    engine: str = "local"
    engine_options: dict = field(default_factory=dict)
    backend: str = "numpy"
    device: str = "cpu"
    force: bool = False
    prune: bool = False
    fail_fast: bool = False
    retry_failed: bool = True
    progress: Progress = field(default_factory=Progress)

    def check(self) -> None:
        """Usage errors, before anything is written."""
        if not self.inputs and not self.listed:
            raise ConfigError("no INPUT given: name directories, files or globs (or use --files-from)")
        for item in self.inputs:
            if not os.path.lexists(item) and not glob.has_magic(item):
                raise ConfigError(f"INPUT not found: {item}")
        check_output(self.out)

    def execute(self) -> RunSummary:
        started, started_at = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        self.check()
        from audiokit.store.schema import META_DIR

        log_path = os.path.join(os.path.abspath(self.out), META_DIR, "workers.log")
        engine = create_engine(self.engine, log_path=log_path, **self.engine_options)
        warnings: list[str] = []

        def on_warning(message: str) -> None:
            warnings.append(message)
            self.progress.warn(message)

        files = discover(
            self.inputs + self.listed, extensions=self.config.input.extensions,
            include=self.include, exclude=self.exclude, on_warning=on_warning,
        )
        if not files:
            on_warning("no audio files found in the INPUTs (in directories, audio is recognised by [input] extensions)")
        if self.prune and (not files or any(m.startswith(("cannot read", "no file matches")) for m in warnings)):
            # An unmounted disk or a typo must not empty a dataset built over months.
            raise ConfigError("--prune refused: an INPUT is missing or no audio was found, so every row would go")
        summary = RunSummary(files_seen=len(files), output=os.path.abspath(self.out), warnings=warnings)
        try:
            dataset = Dataset(self.out, version=__version__).open()
        except OutputError as exc:
            summary.error = str(exc)
            exc.summary = summary
            raise
        try:
            self._execute(dataset, engine, files, summary, on_warning)
            summary.wall_s = time.monotonic() - started
            self._write_manifest(dataset, summary, started_at)
        except OutputError as exc:
            if exc.summary is None:
                summary.error = str(exc)
                exc.summary = summary
            raise
        finally:
            dataset.close()
        if summary.signal is not None:
            raise Interrupted(summary.signal, summary=summary)
        return summary

    def _execute(self, dataset: Dataset, engine: Engine, files: list[AudioFile], summary: RunSummary, warn) -> None:
        from audiokit.pipeline import FileProcessor, plan
        from audiokit.stages import Stages

        _warn_moved_roots(files, dataset.files, warn)
        config = self.config
        work = plan(files, config, dataset.files, dataset.locations, force=self.force, retry_failed=self.retry_failed)
        summary.skipped = len(work.skipped)
        if self.prune:
            summary.pruned = dataset.prune({f.file_id for f in files}, config=config.to_dict(), config_hash=config.config_hash)
        schemas = FileProcessor(config, staging_path=None).table_schemas if work.tasks else {}
        committer = Committer(
            dataset, config, schemas, summary,
            files={t.file.file_id: t.file for t in work.tasks}, progress=self.progress, fail_fast=self.fail_fast,
        )
        committer.engine = engine
        stages = Stages(config, dataset.staging_dir, backend=self.backend, device=self.device)
        self.progress.start([t.file for t in work.tasks])
        stop_signal: list[int] = []
        with _stop_on_signals(lambda signum: (stop_signal.append(signum), engine.stop())):
            try:
                engine.run(work.tasks, stages, committer)
            finally:
                try:
                    committer.commit()
                finally:
                    self.progress.close()
        if committer.output_failure is not None:
            summary.error = f"{committer.output_failure}; every file committed before is intact"
            raise OutputError(summary.error, summary=summary)
        if stop_signal:
            summary.stopped = signal.Signals(stop_signal[0]).name
            summary.signal = stop_signal[0]

    def _write_manifest(self, dataset: Dataset, summary: RunSummary, started_at: dt.datetime) -> None:
        config = self.config
        dataset.write_manifest(
            {
                "schema_version": SCHEMA_VERSION,
                "audiokit_version": __version__,
                "config": config.to_dict(),
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
                "inputs": self.inputs + self.listed,
                **summary.to_dict(),
            }
        )


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


__all__ = ["Committer", "Progress", "Run", "RunSummary", "check_output"]
