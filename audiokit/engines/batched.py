"""The engine for `--backend torch`: CPU workers decode, the caller's process computes frame
features and embeddings in device batches packed across files, then commits as the local
engine does.

Design (the smallest change to the local engine):

- The worker pool is `LocalEngine`'s, unchanged: one file at a time per worker process, crash
  and time-limit isolation, per-file errors as rows. Its workers build a `DecodingProcessor`
  instead of a `FileProcessor`: it decodes, mixes channels and resamples exactly as before and
  runs every extractor that has no torch twin, but the frame extractors (`mfcc`, `logmel`,
  `spectral`) only collect the resampled signal, once per sample rate, and `embeddings` only
  cuts its windows (the model's front end included). The worker returns a `DecodedFile` (a
  `FileResult` carrying those signals and windows) over its pipe.
- Embedding windows of the held files go to the model `batch_size` at a time, every batch
  full (`embed_across_files`), so a window's vector does not depend on its batch-mates.
- The caller's process owns the device. It holds decoded files until they add up to a device
  batch (`max_batch_frames`, from the memory budget of the device) or the oldest has waited
  `max_wait_s`, then runs each frame extractor once over all of them with
  `audiokit.extractors.batched.compute_batch` (pinned, double-buffered host memory and
  asynchronous copies on CUDA; one synchronisation per call), writes each file's rows to its
  staging parts and hands the finished `FileResult`s on. The rows equal the numpy backend's.
- That compute runs in a thread of the caller's process, so the pool keeps handing out files
  while a batch computes; every result (error rows included) passes through that thread in
  order, so `on_result` (commits, progress) is called from one thread only. When decoded
  samples worth two device batches are waiting, the pool stops handing out files (bounded
  memory when the device is the slower side). Staged files are written by a few threads.
- A batch that fails as a whole (say, out of device memory) is retried file by file; a file that
  still fails becomes an `extract` error row, and its other staged parts are dropped.
- Decoded signals live in the caller's memory until their batch is computed, at most about one
  device batch's worth plus one file of at most `run.max_device_file_s` (600 s). A longer file
  is not shipped: its worker computes it block by block with the per-file path (numpy, the same
  rows within the backends' tolerance), so memory stays bounded on multi-hour recordings.
- Files held when the run is stopped (SIGINT, `--fail-fast`) are abandoned, as files in flight
  are in the local engine: nothing of them is committed and the next run redoes them.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from audiokit.config import Config
from audiokit.engines.local import LocalEngine
from audiokit.errors import FileError
from audiokit.extractors import REGISTRY
from audiokit.extractors.base import Extractor
from audiokit.extractors.embeddings import EmbeddingRows, Embeddings, Window, Windower, embed_across_files
from audiokit.extractors.frames import FrameExtractor
from audiokit.pipeline import (
    OUTPUT_FAILURE,
    FileProcessor,
    StagingError,
    Task,
    _stage,
    _with_file_id,
)
from audiokit.store.dataset import FileResult
from audiokit.store.parts import StageWriter

MAX_WAIT_S = 5.0
WINDOW_BYTES_PER_FLUSH = 64 << 20  # embedding windows gathered before the model runs on them
STAGE_THREADS = 4
_END = object()  # end of the run, for the compute thread


def has_torch_twin(ext: Extractor) -> bool:
    return isinstance(ext, FrameExtractor) and (
        type(ext)._build_torch_module is not FrameExtractor._build_torch_module
    )


def runs_on_device(ext: Extractor) -> bool:
    """Computed in the caller's process, batched across files: frame features with a torch
    twin, and embedding models (their windows are cut in the workers)."""
    return has_torch_twin(ext) or isinstance(ext, Embeddings)


@dataclass
class FileWindows:
    """One file's embedding windows, cut by a worker, for the caller's model."""

    channels: int
    duration_s: float
    windows: list[Window]


@dataclass
class DecodedFile(FileResult):
    """A file decoded by a worker whose frame features are still to be computed."""

    signals: dict[int, np.ndarray] = field(default_factory=dict)  # rate -> (channels, n) float32
    windows: dict[str, FileWindows] = field(default_factory=dict)  # embeddings extractor -> windows
    deferred: tuple[str, ...] = ()  # extractors to compute from `signals` or `windows`


class _TooLongForDevice(FileError):
    """A file's signal outgrew `run.max_device_file_s`: its worker computes it instead."""

    def __init__(self):
        super().__init__(TOO_LONG_FOR_DEVICE, "longer than run.max_device_file_s")


TOO_LONG_FOR_DEVICE = "too_long_for_device"  # never reaches a files row: the worker redoes the file


class _SignalCollector:
    """A stream that keeps the blocks it is fed (up to `max_samples`) and emits no rows."""

    def __init__(self, max_samples: int):
        self.blocks: list[np.ndarray] = []
        self.samples = 0
        self.max_samples = max_samples

    def push(self, block: np.ndarray) -> list:
        self.samples += block.shape[1]
        if self.samples > self.max_samples:
            self.blocks = []
            raise _TooLongForDevice()
        self.blocks.append(np.array(block, dtype=np.float32, copy=True))
        return []

    def finish(self) -> list:
        return []

    def signal(self, channels: int) -> np.ndarray:
        if not self.blocks:
            return np.zeros((channels, 0), dtype=np.float32)
        return np.concatenate(self.blocks, axis=1)


class _WindowCollector:
    """A stream that cuts a file's embedding windows (front end included) and keeps them, up to
    `max_bytes`, for the caller's model; it emits no rows."""

    def __init__(self, ext: Embeddings, channels: int, max_bytes: int):
        self.windower = Windower(ext, channels)
        self.channels = channels
        self.windows: list[Window] = []
        self.nbytes = 0
        self.max_bytes = max_bytes

    def push(self, block: np.ndarray) -> list:
        self._keep(self.windower.push(block))
        return []

    def finish(self) -> list:
        self._keep(self.windower.finish())
        return []

    def _keep(self, windows: list[Window]) -> None:
        self.windows += windows
        self.nbytes += sum(w.units.nbytes for w in windows)
        if self.nbytes > self.max_bytes:
            self.windows = []
            raise _TooLongForDevice()

    def result(self) -> FileWindows:
        return FileWindows(self.channels, self.windower.duration_s, self.windows)


class _NoSink:
    def write(self, data) -> None:
        raise AssertionError("a deferred extractor emitted rows in a decode worker")


_NO_SINK = _NoSink()


class _NoRows:
    def push(self, block):
        return []

    def finish(self):
        return []


class _Deferred:
    """Stands in for a device extractor inside a decode worker: collects its rate's signal
    (frame features) or its windows (embeddings)."""

    def __init__(self, ext: FrameExtractor | Embeddings, processor: DecodingProcessor):
        self.ext = ext
        self.name = ext.name
        self.table = ext.table
        self.sample_rate = ext.sample_rate
        self._processor = processor

    def start(self, channels: int, sample_rate: int):
        self._processor.started.append(self.name)
        if isinstance(self.ext, Embeddings):
            # Up to twice the bytes of the samples of `max_device_file_s` (overlapping windows).
            limit = 2 * 4 * channels * int(self._processor.config.run.max_device_file_s * sample_rate)
            collector = _WindowCollector(self.ext, channels, limit)
            self._processor.window_sets[self.name] = collector
            return collector
        collectors = self._processor.collectors
        if sample_rate in collectors:
            return _NoRows()  # another frame extractor already keeps this rate's samples
        limit = int(self._processor.config.run.max_device_file_s * sample_rate)
        collectors[sample_rate] = (_SignalCollector(limit), channels)
        return collectors[sample_rate][0]


class DecodingProcessor(FileProcessor):
    """A worker's `FileProcessor` for the torch backend: frame features and embedding models
    are left to the caller."""

    def __init__(self, config: Config, *, staging_path, backend: str = "torch", **kwargs):
        kwargs["device"] = "cpu"  # the device belongs to the caller's process
        super().__init__(config, staging_path=staging_path, backend="numpy", **kwargs)
        self.collectors: dict[int, tuple[_SignalCollector, int]] = {}
        self.window_sets: dict[str, _WindowCollector] = {}
        self.started: list[str] = []
        # `summary` reads the frame rows in this worker, so with it in the chain the frame
        # features are computed here too (numpy; the same rows within the backends' tolerance).
        summarised = any(ext.consumes_rows for ext in self.extractors.values())
        for name, ext in list(self.extractors.items()):
            if runs_on_device(ext) and not (summarised and isinstance(ext, FrameExtractor)):
                self.extractors[name] = _Deferred(ext, self)
        self._whole_file: FileProcessor | None = None  # for files too long for the device

    def _sink(self, sinks, ext, file_id):
        if isinstance(ext, _Deferred):
            return _NO_SINK  # its rows are written by the caller, after the device batch
        return super()._sink(sinks, ext, file_id)

    def _run(self, *args, **kwargs) -> None:
        # A decode that is retried with another decoder starts from the file's first sample.
        self.collectors, self.window_sets, self.started = {}, {}, []
        super()._run(*args, **kwargs)

    def process(self, task: Task, on_open=None) -> FileResult:
        self.collectors, self.window_sets, self.started = {}, {}, []
        result = super().process(task, on_open)
        collectors, self.collectors = self.collectors, {}
        window_sets, self.window_sets = self.window_sets, {}
        if result.row["error_kind"] == TOO_LONG_FOR_DEVICE:
            # Shipping a long recording's samples whole would hold them in two processes:
            # compute this file here, block by block, with the per-file path (numpy; the same
            # rows within the backends' tolerance) and memory stays bounded.
            if self._whole_file is None:
                self._whole_file = FileProcessor(self.config, staging_path=self.staging_path, backend="numpy")
            return self._whole_file.process(task, on_open)
        if result.row["status"] != "ok" or not self.started:
            return result
        signals = {
            rate: collector.signal(channels) for rate, (collector, channels) in collectors.items()
        }
        return DecodedFile(
            **_fields(result),
            signals=signals,
            windows={name: c.result() for name, c in window_sets.items()},
            deferred=tuple(self.started),
        )


def _fields(result: FileResult) -> dict:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(FileResult)}


class BatchedEngine:
    """`LocalEngine`'s decode workers feeding torch compute in the caller's process."""

    def __init__(
        self,
        config: Config,
        *,
        workers: int,
        staging_path,
        device: str = "auto",
        log_path: str | None = None,
        max_batch_frames: int | None = None,
        max_wait_s: float = MAX_WAIT_S,
    ):
        self.config = config
        self.staging_path = staging_path
        self.device = device
        self.max_batch_frames = max_batch_frames
        self.max_wait_s = max_wait_s
        self._extractors: dict[str, FrameExtractor | Embeddings] | None = None  # built on first use
        self._pending: list[DecodedFile] = []
        self._pending_load = 0.0  # in device batches (a flush at 1)
        self._oldest = 0.0
        self.batches = 0  # device batches computed, for benchmarks
        self.local = LocalEngine(
            config,
            workers=workers,
            staging_path=staging_path,
            backend="torch",
            device="cpu",
            log_path=log_path,
            processor_class=DecodingProcessor,
        )

    def stop(self) -> None:
        self.local.stop()

    def _device_extractors(self) -> dict[str, FrameExtractor | Embeddings]:
        """The chain's extractors that the caller computes (see `runs_on_device`)."""
        if self._extractors is None:
            self._extractors = {}
            for name in self.config.chain:
                ext = REGISTRY[name](self.config.params[name], backend="torch", device=self.device)
                if runs_on_device(ext):
                    self._extractors[name] = ext
        return self._extractors

    def _frame_extractors(self) -> dict[str, FrameExtractor]:
        return {n: e for n, e in self._device_extractors().items() if isinstance(e, FrameExtractor)}

    def _batch_frames(self) -> int:
        if self.max_batch_frames is None:
            from audiokit.extractors.batched import default_max_frames

            sizes = []
            for ext in self._frame_extractors().values():
                ext.torch_module()  # resolves ext.torch_device
                sizes.append(default_max_frames(ext, ext.torch_device))
            self.max_batch_frames = min(sizes, default=1)
        return self.max_batch_frames

    def run(
        self, tasks: list[Task], on_result: Callable[[FileResult], None], on_tick: Callable[[], None] | None = None
    ) -> None:
        """Decode in the worker pool (this thread), compute and hand on results in another.

        `on_tick` is not called: results (and so commits) already come from the compute thread
        at least every `max_wait_s`, and calling the caller from two threads would race.

        Every result goes through the compute thread in arrival order, so `on_result` is only
        ever called from one thread. The pool blocks when decoded samples worth more than two
        device batches wait, so host memory stays bounded when the device is the slower side.
        """
        self._batch_frames()
        inbox: queue.Queue = queue.Queue()
        room = threading.Condition()
        queued = [0.0]  # device batches decoded but not yet computed
        failure: list[BaseException] = []

        def on_worker_result(result: FileResult) -> None:
            load = self._load_of(result) if isinstance(result, DecodedFile) else 0.0
            with room:
                room.wait_for(lambda: queued[0] < 2.0 or failure)
                queued[0] += load
            inbox.put(result)

        def flush() -> None:
            load = self._pending_load
            self._flush(on_result)
            with room:
                queued[0] -= load
                room.notify_all()

        def compute_loop() -> None:
            try:
                while True:
                    timeout = None
                    if self._pending:
                        timeout = max(0.0, self.max_wait_s - (time.monotonic() - self._oldest))
                    try:
                        item = inbox.get(timeout=timeout)
                    except queue.Empty:
                        flush()  # the oldest decoded file has waited max_wait_s
                        continue
                    if item is _END:
                        if not self.local._stopping:
                            flush()
                        return
                    if not isinstance(item, DecodedFile):
                        on_result(item)
                        continue
                    if not self._pending:
                        self._oldest = time.monotonic()
                    self._pending.append(item)
                    self._pending_load += self._load_of(item)
                    if self._pending_load >= 1.0:
                        flush()
            except BaseException as exc:  # noqa: BLE001 - a commit that failed: stop the run, re-raise there
                failure.append(exc)
                self.local.stop()
                with room:
                    room.notify_all()

        thread = threading.Thread(target=compute_loop, name="audiokit-compute", daemon=True)
        thread.start()
        try:
            self.local.run(tasks, on_worker_result)
        finally:
            inbox.put(_END)
            thread.join()
            for held in self._pending:  # abandoned: their staged parts are never committed
                _drop_staged(held)
            self._pending, self._pending_load = [], 0.0
        if failure:
            raise failure[0]

    def _load_of(self, decoded: DecodedFile) -> float:
        """A decoded file's share of a device batch: its frames, plus its embedding windows
        (a batch holds at least four model batches of them, or `WINDOW_BYTES_PER_FLUSH`)."""
        load = 0.0
        if decoded.signals:
            hops = [e.hop_length for e in self._frame_extractors().values()] or [1]
            frames = max(s.shape[0] * s.shape[1] for s in decoded.signals.values()) // min(hops) + 1
            load += frames / self.max_batch_frames
        for name, held in decoded.windows.items():
            if held.windows:
                per_window = held.windows[0].units.nbytes
                batch_size = self._device_extractors()[name].params.batch_size
                load += len(held.windows) * per_window / max(WINDOW_BYTES_PER_FLUSH, 4 * batch_size * per_window)
        return load

    def _flush(self, on_result: Callable[[FileResult], None]) -> None:
        pending, self._pending, self._pending_load = self._pending, [], 0.0
        if not pending:
            return
        from audiokit.extractors.batched import compute_batch, record_batches

        failed: dict[int, tuple[str, str]] = {}  # pending index -> (error_kind, error)
        for name, ext in self._device_extractors().items():
            members = [i for i, d in enumerate(pending) if name in d.deferred and i not in failed]
            if not members:
                continue
            if isinstance(ext, Embeddings):
                inputs = [pending[i].windows[name] for i in members]

                def compute(items, ext=ext):
                    vectors = embed_across_files(ext, [held.windows for held in items])
                    return list(zip(items, vectors))

                def rows(payload, ext=ext):
                    held, vectors = payload
                    builder = EmbeddingRows(ext, held.channels)
                    return builder.add(held.windows, vectors) + builder.finish(held.duration_s)

            else:
                rates = [ext.sample_rate or pending[i].row["sample_rate"] for i in members]
                inputs = [(pending[i].signals[rate], rate) for i, rate in zip(members, rates)]

                def compute(items, ext=ext):
                    signals = [signal for signal, _rate in items]
                    columns = compute_batch(ext, signals, max_frames=self.max_batch_frames)
                    return [(cols, rate) for cols, (_signal, rate) in zip(columns, items)]

                def rows(payload, ext=ext):
                    return record_batches(ext, *payload)

            try:
                payloads = compute(inputs)
                self.batches += 1
            except Exception:  # noqa: BLE001 - whatever broke the batch, retry file by file
                payloads = []
                for i, item in zip(members, inputs):
                    try:
                        payloads.extend(compute([item]))
                    except Exception as exc:  # noqa: BLE001 - a per-file problem becomes its row
                        failed[i] = ("extract", f"{ext.name} failed: {type(exc).__name__}: {exc}")
                        payloads.append(None)

            def stage(i: int, payload, ext=ext, rows=rows) -> None:
                try:
                    self._stage(pending[i], ext, rows(payload))
                except StagingError as exc:
                    # Not the file's fault (disk full, output gone): the writer stops the run.
                    failed[i] = (OUTPUT_FAILURE, str(exc))
                except Exception as exc:  # noqa: BLE001 - a per-file problem becomes its row
                    failed[i] = ("extract", f"{ext.name} failed: {type(exc).__name__}: {exc}")

            # Building the rows and writing them release the GIL for the most part: stage in parallel.
            jobs = [(i, payload) for i, payload in zip(members, payloads) if payload is not None]
            with ThreadPoolExecutor(max_workers=STAGE_THREADS) as pool:
                list(pool.map(lambda job: stage(*job), jobs))
        for i, decoded in enumerate(pending):
            result = FileResult(**_fields(decoded))
            if i in failed:
                _drop_staged(result)
                kind, message = failed[i]
                result.row.update(status="error", error_kind=kind, error=message)
                result = FileResult(result.file_id, result.row, {}, result.clear_tables)
            on_result(result)

    def _stage(self, decoded: DecodedFile, ext: FrameExtractor | Embeddings, batches: list) -> None:
        if not batches:
            return
        schema = ext.schema()
        sink = StageWriter(self.staging_path(decoded.file_id, ext.table), schema)
        try:
            for batch in batches:
                _stage(sink, _with_file_id(batch, decoded.file_id, schema))
            decoded.staged[ext.table] = _stage(sink, None)
            decoded.rows[ext.table] = sink.rows
        except BaseException:
            sink.abort()
            raise


def _drop_staged(result: FileResult) -> None:
    for path in result.staged.values():
        try:
            os.unlink(path)
        except OSError:
            pass


def resolve_torch_device(device: str) -> str:
    """`--device` for `--backend torch`: `auto` → cuda when available. Raises ImportError
    without torch and ValueError for cuda without a GPU."""
    import torch  # noqa: F401  (ImportError: not installed)

    from audiokit.dsp.torch_ops import resolve_device

    return resolve_device(device)


__all__ = ["BatchedEngine", "DecodedFile", "DecodingProcessor", "resolve_torch_device"]
