"""The per-file work of a run, as two stages that no engine owns.

- *prepare* runs in workers, one file at a time: decode, resample, run every CPU extractor and
  stage its rows (`audiokit.pipeline.FileProcessor`). With `--backend torch`, the extractors
  that declare a device stage (`Extractor.device_stage()`: frame features with a torch twin,
  embedding models) only collect what that stage needs — the resampled signal, the windows —
  and the file comes back `Prepared`.
- *finish* runs in the one process that owns the device: it gathers prepared files until they
  fill a device batch (or the oldest has waited `MAX_WAIT_S`), computes each device stage once
  over all of them, stages their rows and hands on finished `FileResult`s. The rows equal the
  numpy backend's. A batch that fails as a whole is retried file by file; a file that still
  fails becomes an `extract` error row. A file whose held data would outgrow
  `run.max_device_file_s` is computed by its worker instead (per file, block by block), so
  memory stays bounded on multi-hour recordings.

`Stages` is small and picklable, so any engine (a local process pool, Ray actors) can build
the preparer once per worker and the finisher once where the device is.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from audiokit.config import Config
from audiokit.engines.base import Outcome, OutputFailed
from audiokit.extractors import REGISTRY
from audiokit.extractors.base import TooLongForDevice
from audiokit.pipeline import FileProcessor, StagingError, Task, _stage, _with_file_id
from audiokit.store.dataset import FileResult
from audiokit.store.parts import INLINE_BYTES, StageWriter

MAX_WAIT_S = 5.0
STAGE_THREADS = 4


@dataclass(frozen=True)
class Stages:
    """What a run's engine needs to process files: the config, the backend, the staging area."""

    config: Config
    staging_dir: str
    backend: str = "numpy"
    device: str = "cpu"
    # Decided where the run starts, so that workers on other machines stage as it says.
    inline_bytes: int = field(default_factory=lambda: INLINE_BYTES)

    def staging_path(self, file_id: str, table: str) -> str:
        return os.path.join(self.staging_dir, f"{file_id}.{table}.{os.getpid()}.{time.monotonic_ns()}.arrow")

    @functools.cached_property
    def has_finish(self) -> bool:
        return self.backend == "torch" and bool(deferred_names(self.config))

    def preparer(self) -> FileProcessor:
        """Built once per worker. Workers compute on the CPU with numpy whatever the backend:
        with `--backend torch` the device belongs to the finish stage's process."""
        if self.backend == "torch":
            return DevicePreparer(self.config, staging_path=self.staging_path, inline_bytes=self.inline_bytes)
        return FileProcessor(self.config, staging_path=self.staging_path, backend=self.backend, device=self.device,
                             inline_bytes=self.inline_bytes)

    def finisher(self) -> Finisher | None:
        """Built once, in the process that owns the device; None when there is nothing to finish."""
        if not self.has_finish:
            return None
        return Finisher(self.config, staging_path=self.staging_path, device=self.device, inline_bytes=self.inline_bytes)

    def preload(self) -> None:
        FileProcessor.preload(self.config)

    def seconds_per_audio_hour(self) -> float:
        """The per-hour time limit of a file: slow extractors (models on CPU) raise it."""
        needed = [REGISTRY[n](self.config.params[n]).seconds_per_audio_hour() for n in self.config.chain]
        return max([self.config.run.file_timeout, *needed])


def _device_stage(config: Config, name: str, device: str):
    return REGISTRY[name](config.params[name], backend="torch", device=device).device_stage()


def deferred_names(config: Config) -> tuple[str, ...]:
    """The chain's extractors whose rows the finish stage computes: those with a device stage,
    except the ones whose rows a `consumes_rows` extractor (summary) reads in the worker."""
    readers = [REGISTRY[n] for n in config.chain if REGISTRY[n].consumes_rows]
    return tuple(
        name
        for name in config.chain
        if not any(r.reads(REGISTRY[name]) for r in readers) and _device_stage(config, name, "cpu") is not None
    )


@dataclass
class Prepared(FileResult):
    """A file whose device stages are still to run: what their collectors hold, by stage key."""

    held: dict = field(default_factory=dict)
    deferred: tuple[str, ...] = ()  # the extractors whose rows the finisher writes


def _fields(result: FileResult) -> dict:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(FileResult)}


class _NoSink:
    def write(self, data) -> None:
        raise AssertionError("a device stage's collector emitted rows in a worker")


_NO_SINK = _NoSink()


class _NoRows:
    def push(self, block):
        return []

    def finish(self):
        return []


class _Deferred:
    """Stands in for an extractor with a device stage inside a worker: feeds its collector."""

    def __init__(self, ext, stage, preparer: DevicePreparer):
        self.ext, self.stage, self.preparer = ext, stage, preparer
        self.name, self.table, self.sample_rate = ext.name, ext.table, ext.sample_rate
        self.consumes_rows = False
        self.native_channels = False

    def start(self, channels: int, sample_rate: int):
        self.preparer.started.append(self.name)
        key = self.stage.key(sample_rate)
        if key in self.preparer.collectors:
            return _NoRows()  # another extractor already keeps this (a rate's signal)
        collector = self.stage.collector(channels, sample_rate, self.preparer.config.run.max_device_file_s)
        self.preparer.collectors[key] = collector
        return collector


class DevicePreparer(FileProcessor):
    """A worker's prepare stage when the chain has device stages: they only collect."""

    def __init__(self, config: Config, *, staging_path, inline_bytes: int = INLINE_BYTES):
        super().__init__(config, staging_path=staging_path, backend="numpy", device="cpu", inline_bytes=inline_bytes)
        self.collectors: dict = {}
        self.started: list[str] = []
        for name in deferred_names(config):
            self.extractors[name] = _Deferred(self.extractors[name], _device_stage(config, name, "cpu"), self)
        self._per_file: FileProcessor | None = None  # for files too long for the device

    def _sink(self, sinks, ext, file_id):
        if isinstance(ext, _Deferred):
            return _NO_SINK  # its rows are written by the finisher, after the device batch
        return super()._sink(sinks, ext, file_id)

    def _run(self, *args, **kwargs) -> None:
        # A decode retried with another decoder starts again from the file's first sample.
        self.collectors, self.started = {}, []
        super()._run(*args, **kwargs)

    def process(self, task: Task, on_open=None) -> Outcome:
        try:
            result = super().process(task, on_open)
        except TooLongForDevice:
            # Shipping a long recording's samples whole would hold them in two processes:
            # compute it here, block by block, on the per-file path (numpy; the same rows within
            # the backends' tolerance).
            if self._per_file is None:
                self._per_file = FileProcessor(self.config, staging_path=self.staging_path, backend="numpy",
                                               inline_bytes=self.inline_bytes)
            return self._per_file.process(task, on_open)
        finally:
            collectors, self.collectors = self.collectors, {}
        if isinstance(result, OutputFailed) or result.row["status"] != "ok" or not self.started:
            return result
        return Prepared(**_fields(result), held={k: c.held() for k, c in collectors.items()}, deferred=tuple(self.started))


class Finisher:
    """The finish stage: device batches across files, in the process that owns the device.

    `add(prepared)` returns what became final (a batch that filled up), `due()` says whether
    the oldest held file has waited `max_wait_s`, `flush()` finishes everything held, and
    `load` is what is held, in device batches (a flush happens at 1)."""

    def __init__(self, config: Config, *, staging_path, device: str, max_wait_s: float = MAX_WAIT_S,
                 inline_bytes: int = INLINE_BYTES):
        self.config = config
        self.staging_path = staging_path
        self.inline_bytes = inline_bytes
        self.max_wait_s = max_wait_s
        self.stages = {name: _device_stage(config, name, device) for name in deferred_names(config)}
        self.pending: list[Prepared] = []
        self.load = 0.0
        self.oldest = 0.0

    def load_of(self, prepared: Prepared) -> float:
        """A prepared file's share of a device batch (its largest over its device stages)."""
        loads = [self.stages[name].load(prepared.held[self._key(name, prepared)]) for name in prepared.deferred]
        return max(loads, default=0.0)

    def _key(self, name: str, prepared: Prepared):
        stage = self.stages[name]
        return stage.key(stage.extractor.sample_rate or prepared.row["sample_rate"])

    def add(self, prepared: Prepared) -> list[Outcome]:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(prepared)
        self.load += self.load_of(prepared)
        return self.flush() if self.load >= 1.0 else []

    def due(self) -> bool:
        return bool(self.pending) and time.monotonic() - self.oldest >= self.max_wait_s

    def seconds_until_due(self) -> float | None:
        if not self.pending:
            return None
        return max(0.0, self.max_wait_s - (time.monotonic() - self.oldest))

    def abandon(self) -> None:
        """Drop what is held (a stopped run): its staged parts are never committed."""
        for prepared in self.pending:
            _drop_staged(prepared)
        self.pending, self.load = [], 0.0

    def flush(self) -> list[Outcome]:
        pending, self.pending, self.load = self.pending, [], 0.0
        failed: dict[int, tuple[str, str] | OutputFailed] = {}
        for name, stage in self.stages.items():
            members = [i for i, p in enumerate(pending) if name in p.deferred and i not in failed]
            if not members:
                continue
            helds = [pending[i].held[self._key(name, pending[i])] for i in members]
            try:
                payloads = stage.compute(helds)
            except Exception:  # noqa: BLE001 - whatever broke the batch, retry file by file
                payloads = []
                for i, held in zip(members, helds):
                    try:
                        payloads.extend(stage.compute([held]))
                    except Exception as exc:  # noqa: BLE001 - a per-file problem becomes its row
                        failed[i] = ("extract", f"{name} failed: {type(exc).__name__}: {exc}")
                        payloads.append(None)

            def stage_rows(i: int, payload, name=name, stage=stage) -> None:
                try:
                    self._stage(pending[i], stage.extractor, stage.rows(payload))
                except StagingError as exc:
                    failed[i] = OutputFailed(pending[i].file_id, str(exc))
                except Exception as exc:  # noqa: BLE001 - a per-file problem becomes its row
                    failed[i] = ("extract", f"{name} failed: {type(exc).__name__}: {exc}")

            # Building the rows and writing them release the GIL for the most part: in parallel.
            jobs = [(i, payload) for i, payload in zip(members, payloads) if payload is not None]
            with ThreadPoolExecutor(max_workers=STAGE_THREADS) as pool:
                list(pool.map(lambda job: stage_rows(*job), jobs))
        outcomes: list[Outcome] = []
        for i, prepared in enumerate(pending):
            result = FileResult(**_fields(prepared))
            if i in failed:
                _drop_staged(result)
                if isinstance(failed[i], OutputFailed):
                    outcomes.append(failed[i])
                    continue
                kind, message = failed[i]
                result.row.update(status="error", error_kind=kind, error=message)
                result = FileResult(result.file_id, result.row, {}, result.clear_tables)
            outcomes.append(result)
        return outcomes

    def _stage(self, prepared: Prepared, ext, batches: list) -> None:
        if not batches:
            return
        schema = ext.schema()
        sink = StageWriter(self.staging_path(prepared.file_id, ext.table), schema, self.inline_bytes)
        try:
            for batch in batches:
                _stage(sink, _with_file_id(batch, prepared.file_id, schema))
            prepared.staged[ext.table] = _stage(sink, None)
            prepared.rows[ext.table] = sink.rows
        except BaseException:
            sink.abort()
            raise


def _drop_staged(result: FileResult) -> None:
    for source in result.staged.values():
        if isinstance(source, str):
            try:
                os.unlink(source)
            except OSError:
                pass


__all__ = ["Finisher", "Prepared", "Stages"]
