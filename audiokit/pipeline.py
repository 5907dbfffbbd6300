"""Planning (what to skip) and processing one file: decode once, resample once per rate,
feed every extractor that wants that rate, stage the rows for the writer."""

from __future__ import annotations

import importlib
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from audiokit.audio import Resampler, apply_channel_policy, open_audio, output_channels
from audiokit.config import Config
from audiokit.discover import AudioFile
from audiokit.engines.base import Outcome, OutputFailed
from audiokit.errors import DecodeError, ExtractorError, FileError
from audiokit.extractors import REGISTRY, Extractor
from audiokit.extractors.base import TooLongForDevice
from audiokit.store.arrays import repeated
from audiokit.store.dataset import FileResult
from audiokit.store.parts import INLINE_BYTES, StageWriter


@dataclass(frozen=True)
class Task:
    """One file to process and which extractors of the chain to run on it."""

    file: AudioFile
    extractors: tuple[str, ...]
    keep_done: tuple[str, ...] = ()  # "name:hash" entries whose rows stay valid
    clear_tables: tuple[str, ...] = ()  # tables whose old rows of this file must go


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    skipped: list[AudioFile] = field(default_factory=list)


def done_entry(config: Config, name: str) -> str:
    return f"{name}:{config.extractor_hash(name)}"


def plan(
    files: list[AudioFile],
    config: Config,
    state: dict[str, dict],
    locations: dict[str, dict[str, str]],
    *,
    force: bool = False,
    retry_failed: bool = True,
) -> Plan:
    """Skip files whose fingerprint and per-extractor config are unchanged since they succeeded."""
    result = Plan()
    entries = {name: done_entry(config, name) for name in config.chain}
    chain_tables = {REGISTRY[name].table for name in config.chain}
    for f in files:
        row = state.get(f.file_id)
        held = tuple(t for t, where in locations.items() if f.file_id in where and t != "files")
        unchanged = row is not None and (
            row["path"] == f.display_path and row["size_bytes"] == f.size_bytes and row["mtime_ns"] == f.mtime_ns
        )
        if not unchanged:
            # New or changed: everything about it is recomputed and old rows everywhere go.
            result.tasks.append(Task(f, config.chain, (), tuple(sorted(set(held) | chain_tables))))
            continue
        done = set(row.get("extractors") or [])
        other = tuple(sorted(e for e in done if e.split(":", 1)[0] not in config.chain))
        if force:
            result.tasks.append(Task(f, config.chain, other, tuple(sorted(chain_tables))))
            continue
        needed = _with_rows_read(config, tuple(n for n in config.chain if entries[n] not in done))
        if not needed or (row["status"] == "error" and not retry_failed):
            result.skipped.append(f)
            continue
        keep = tuple(sorted(e for e in done if e.split(":", 1)[0] not in needed))
        tables = tuple(sorted(REGISTRY[n].table for n in needed))
        result.tasks.append(Task(f, needed, keep, tables))
    return result


def _with_rows_read(config: Config, needed: tuple[str, ...]) -> tuple[str, ...]:
    """`needed` plus, for a `consumes_rows` extractor among them (summary), the extractors whose
    rows it reads in the same run; in chain order."""
    wanted = set(needed)
    for name in needed:
        cls = REGISTRY[name]
        if cls.consumes_rows:
            wanted |= {o for o in config.chain if o != name and not REGISTRY[o].consumes_rows and cls.reads(REGISTRY[o])}
    return tuple(n for n in config.chain if n in wanted)


class FileProcessor:
    """Built once per worker: holds the chain's extractors (filterbanks, windows, weights)."""

    def __init__(self, config: Config, *, staging_path, backend: str = "numpy", device: str = "cpu",
                 inline_bytes: int = INLINE_BYTES):
        self.config = config
        self.staging_path = staging_path  # (file_id, table) -> path
        self.inline_bytes = inline_bytes  # rows up to this size go back in memory (StageWriter)
        self.extractors: dict[str, Extractor] = {
            name: REGISTRY[name](config.params[name], backend=backend, device=device) for name in config.chain
        }
        for ext in self.extractors.values():
            if ext.consumes_rows:
                ext.bind(self.extractors)
        self.entries = {name: done_entry(config, name) for name in config.chain}
        self.table_schemas = {ext.table: ext.schema() for ext in self.extractors.values()}

    @staticmethod
    def preload(config: Config) -> None:
        """Import the libraries processing needs (decoder, resampler, the chain's `preload`) in
        this process, so that worker processes forked from it start with them loaded."""
        import soundfile  # noqa: F401
        import soxr  # noqa: F401

        for name in config.chain:
            for module in REGISTRY[name].preload:
                importlib.import_module(module)

    def process(self, task: Task, on_open=None) -> Outcome:
        row = files_row(task, self.config)
        sinks: dict[str, StageWriter] = {}
        try:
            try:
                self._run(task, row, sinks, on_open, backends=("soundfile", "pyav"))
            except DecodeError as first:
                if first.kind != "decode" or first.backend != "soundfile":
                    raise
                # libsndfile gave up inside the stream (lost sync, a damaged frame): FFmpeg
                # often skips the damage and decodes the rest. Start the file again with it.
                for sink in sinks.values():
                    sink.abort()
                sinks.clear()
                try:
                    self._run(task, row, sinks, on_open, backends=("pyav",))
                except DecodeError as second:
                    raise DecodeError(f"libsndfile: {first}; ffmpeg: {second}") from None
            staged, rows = {}, {}
            for table, sink in sinks.items():
                staged[table] = _stage(sink, None)
                rows[table] = sink.rows
            row["extractors"] = sorted(set(task.keep_done) | {self.entries[n] for n in task.extractors})
            return FileResult(task.file.file_id, row, staged, task.clear_tables, rows)
        except FileError as exc:
            row.update(status="error", error_kind=exc.kind, error=str(exc))
        except MemoryError:
            row.update(status="error", error_kind="memory", error="ran out of memory")
        except StagingError as exc:
            # Not the file's fault (disk full, output gone): the committer stops the run, exit 3.
            for sink in sinks.values():
                sink.abort()
            return OutputFailed(task.file.file_id, str(exc))
        except TooLongForDevice:
            for sink in sinks.values():
                sink.abort()
            raise
        for sink in sinks.values():
            sink.abort()
        return FileResult(task.file.file_id, row, {}, task.clear_tables)

    def _run(self, task: Task, row: dict, sinks: dict[str, StageWriter], on_open, backends) -> None:
        policy = self.config.audio.channels
        with open_audio(task.file.path, backends) as reader:
            info = reader.info
            row.update(sample_rate=info.sample_rate, channels=info.channels, format=info.format)
            if on_open is not None:
                on_open(info)
            mixed_channels = output_channels(policy, info.channels)
            # Streams are grouped by (rate, native): `native_channels` extractors get the
            # decoded channels, the others the channel policy's; each group resamples once.
            by_rate: dict[tuple[int, bool], list[tuple[Extractor, object]]] = {}
            observers: list[tuple[Extractor, object]] = []  # `consumes_rows`: fed rows, finished last
            for name in task.extractors:
                ext = self.extractors[name]
                if getattr(ext, "consumes_rows", False):
                    observers.append((ext, ext.start(mixed_channels, info.sample_rate)))
                    continue
                rate = ext.sample_rate or info.sample_rate
                native = bool(getattr(ext, "native_channels", False)) and mixed_channels != info.channels
                channels = info.channels if native else mixed_channels
                by_rate.setdefault((rate, native), []).append((ext, ext.start(channels, rate)))
            resamplers = {
                key: Resampler(info.sample_rate, key[0], info.channels if key[1] else mixed_channels) for key in by_rate
            }
            block_frames = max(1, int(self.config.audio.block_seconds * info.sample_rate))

            def feed(key: tuple[int, bool], samples: np.ndarray, final: bool) -> None:
                block = np.ascontiguousarray(samples.T)
                for ext, stream in by_rate[key]:
                    sink = self._sink(sinks, ext, task.file.file_id)
                    schema = self.table_schemas[ext.table]
                    try:
                        # Batches are written as they come: a stream may hold a whole
                        # file's rows back until `finish` (the peak floor), never in memory.
                        batches = stream.push(block) if block.shape[1] else ()
                        for batch in itertools.chain(batches, stream.finish() if final else ()):
                            _stage(sink, _with_file_id(batch, task.file.file_id, schema))
                            for _, observer in observers:
                                observer.observe(ext.table, batch)
                    except (FileError, StagingError, TooLongForDevice):
                        raise
                    except Exception as exc:
                        raise ExtractorError(f"{ext.name} failed: {type(exc).__name__}: {exc}") from None

            for samples in reader.blocks(block_frames):
                mixed = apply_channel_policy(samples, policy)
                for key, resampler in resamplers.items():
                    out = resampler.push(samples if key[1] else mixed)
                    if out.shape[0]:
                        feed(key, out, final=False)
            if reader.frames_read == 0:
                raise FileError("empty", "the file holds no audio samples")
            row["duration_s"] = reader.frames_read / info.sample_rate
            for key, resampler in resamplers.items():
                feed(key, resampler.finish(info.channels if key[1] else mixed_channels), final=True)
            for ext, observer in observers:
                sink = self._sink(sinks, ext, task.file.file_id)
                try:
                    for batch in observer.finish():
                        _stage(sink, _with_file_id(batch, task.file.file_id, self.table_schemas[ext.table]))
                except (FileError, StagingError, TooLongForDevice):
                    raise
                except Exception as exc:
                    raise ExtractorError(f"{ext.name} failed: {type(exc).__name__}: {exc}") from None

    def _sink(self, sinks: dict[str, StageWriter], ext: Extractor, file_id: str) -> StageWriter:
        if ext.table not in sinks:
            path = self.staging_path(file_id, ext.table)
            sinks[ext.table] = StageWriter(path, self.table_schemas[ext.table], self.inline_bytes)
        return sinks[ext.table]


class StagingError(Exception):
    """Writing a file's rows to the output's staging area failed (e.g. no space left)."""


def _stage(sink: StageWriter, batch: pa.RecordBatch | None):
    """Write `batch` to `sink`, or commit it when `batch` is None; I/O errors → StagingError."""
    try:
        return sink.commit() if batch is None else sink.write(batch)
    except OSError as exc:
        raise StagingError(f"cannot write to the output: {exc.strerror or exc}") from None


def files_row(task: Task, config: Config) -> dict:
    f = task.file
    return {
        "file_id": f.file_id,
        "path": f.display_path,
        "relpath": f.display_relpath,
        "size_bytes": f.size_bytes,
        "mtime_ns": f.mtime_ns,
        "duration_s": None,
        "sample_rate": None,
        "channels": None,
        "format": None,
        "status": "ok",
        "error_kind": None,
        "error": None,
        "config_hash": config.config_hash,
        "extractors": list(task.keep_done),
        "processed_at": time.time_ns() // 1_000_000,  # ms since the epoch: the column's unit
    }


def error_result(task: Task, config: Config, kind: str, message: str) -> FileResult:
    """The result of a file whose worker died or timed out: an error row, no rows elsewhere."""
    row = files_row(task, config)
    row.update(status="error", error_kind=kind, error=message)
    return FileResult(task.file.file_id, row, {}, task.clear_tables)


def _with_file_id(batch: pa.RecordBatch, file_id: str, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([repeated(file_id, batch.num_rows), *batch.columns], schema=schema.remove_metadata())


__all__ = ["FileProcessor", "Plan", "Task", "plan"]
