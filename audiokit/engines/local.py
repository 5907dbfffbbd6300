"""The local engine: worker processes decode and extract, the caller's process commits.

Each worker builds the chain's extractors once and takes one file at a time over a pipe, so a
worker that crashes (a codec segfault, an out-of-memory kill) or overruns its file's time limit
costs only that file: it is reported as an error result and the worker is replaced. Files are
handed out longest first so one long recording does not finish alone at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

from audiokit.config import Config
from audiokit.extractors import REGISTRY
from audiokit.pipeline import FileProcessor, Task, error_result
from audiokit.store.dataset import FileResult


def _worker_main(
    conn, config: Config, backend: str, device: str, staging_path, log_path, parent: int,
    torch_threads: int = 1, processor_class=FileProcessor,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    _quiet_codecs(log_path)
    _limit_threads()
    reuse_freed_memory()
    # Models (embeddings) run torch in each worker: share the cores, workers × threads ≤ cores.
    os.environ.setdefault("AUDIOKIT_TORCH_THREADS", str(torch_threads))

    processor = processor_class(config, staging_path=staging_path, backend=backend, device=device)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, task = message

        def on_open(info, task_id=task_id):
            conn.send(("open", task_id, info.duration_hint_s))

        result = processor.process(task, on_open=on_open)
        conn.send(("done", task_id, result))


def _die_with_parent(parent: int) -> None:
    """If the run is killed, its workers go too (Linux), instead of finishing orphaned files."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux: workers exit at their next message
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _quiet_codecs(log_path: str | None) -> None:
    """Codec libraries (mpg123) print warnings on fd 2; send them to the worker log so cron mail
    stays clean. Problems that matter reach the user as `files` rows. (PyAV keeps FFmpeg's own
    log off unless asked, and importing it here would cost every worker 35 ms.)"""
    if log_path is None:
        return
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:  # pragma: no cover - keep the terminal's stderr then
        pass


def _limit_threads() -> None:
    """One BLAS/OpenMP thread per worker: the workers already fill the cores."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl missing or unusable
        pass


def reuse_freed_memory() -> None:
    """Keep freed memory for the next block instead of giving it back to the kernel.

    glibc returns each freed array of a few MB (a block's samples, its spectrum) to the kernel
    and the next block faults the same pages in again: ~120k page faults and 10–15 % of a
    worker's time on the benchmark corpus. Blocks repeat their sizes, so a worker's memory stays
    at the high-water mark of one block either way (`scripts/bench.py --memory`)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest; bigger arrays are still mmapped
        libc.mallopt(m_trim_threshold, 128 << 20)
    except (OSError, AttributeError):  # pragma: no cover - not glibc: its allocator decides
        pass


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: object
    task_id: int | None = None
    task: Task | None = None
    deadline: float = 0.0


class LocalEngine:
    def __init__(
        self,
        config: Config,
        *,
        workers: int,
        staging_path,
        backend: str = "numpy",
        device: str = "cpu",
        log_path: str | None = None,
        processor_class: type[FileProcessor] = FileProcessor,
    ):
        self.config = config
        # Slow extractors (neural models on CPU) raise the per-hour time limit; it never drops.
        needed = [REGISTRY[n](config.params[n]).seconds_per_audio_hour() for n in config.chain]
        self.seconds_per_hour = max([config.run.file_timeout, *needed])
        self.processor_class = processor_class  # what each worker builds to process a file
        self.log_path = log_path
        self.n_workers = max(1, workers)
        self.staging_path = staging_path
        self.backend = backend
        self.device = device
        self._stopping = False
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._ctx = multiprocessing.get_context(method)

    def stop(self) -> None:
        """Hand out no more files; files in flight are abandoned (not committed)."""
        self._stopping = True

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(
                child, self.config, self.backend, self.device, self.staging_path, self.log_path,
                os.getpid(), max(1, default_workers() // self.n_workers), self.processor_class,
            ),
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _timeout_for(self, duration_s: float | None) -> float:
        run = self.config.run
        if duration_s is None:
            return max(run.min_file_timeout, self.seconds_per_hour)
        return max(run.min_file_timeout, duration_s / 3600.0 * self.seconds_per_hour)

    def run(
        self,
        tasks: list[Task],
        on_result: Callable[[FileResult], None],
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Process `tasks`, calling `on_result` for each; `on_tick` about once a second, so the
        caller can commit finished files even while a slow file holds a worker."""
        queue = deque(sorted(tasks, key=lambda t: t.file.size_bytes, reverse=True))
        if queue and self._ctx.get_start_method() == "fork":
            # Imported once here rather than by every worker on its first file: on 2 cores,
            # a 34-minute corpus ran 4 % faster (scripts/bench.py).
            self.processor_class.preload(self.config)
        workers = [self._spawn() for _ in range(min(self.n_workers, len(queue)))]
        next_id = 0
        try:
            while True:
                for w in workers:
                    if w.task is None and queue and not self._stopping:
                        w.task_id, w.task = next_id, queue.popleft()
                        next_id += 1
                        w.deadline = time.monotonic() + self._timeout_for(None)
                        w.conn.send((w.task_id, w.task))
                busy = [w for w in workers if w.task is not None]
                if not busy or self._stopping:
                    return
                now = time.monotonic()
                timeout = max(0.0, min(w.deadline for w in busy) - now)
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=min(timeout, 1.0))
                if on_tick is not None:
                    on_tick()
                for i, w in enumerate(workers):
                    if w.task is None:
                        continue
                    gone = False
                    if w.conn in ready or w.process.sentinel in ready:
                        gone = self._service(w, on_result)
                    if w.task is not None and (gone or not w.process.is_alive()):
                        w.process.join(timeout=5)
                        on_result(error_result(w.task, self.config, "crash", _death_message(w.process)))
                        workers[i] = self._replace(w)
                    elif w.task is not None and time.monotonic() > w.deadline:
                        message = "processing took longer than the file's time limit (run.file_timeout)"
                        on_result(error_result(w.task, self.config, "timeout", message))
                        workers[i] = self._replace(w)
        finally:
            for w in workers:
                self._shutdown(w)

    def _service(self, w: _Worker, on_result) -> bool:
        """Read the worker's messages; True if its end of the pipe is gone (it died)."""
        try:
            while w.conn.poll():
                kind, task_id, payload = w.conn.recv()
                if task_id != w.task_id:
                    continue
                if kind == "open":
                    w.deadline = time.monotonic() + self._timeout_for(payload)
                elif kind == "done":
                    w.task, w.task_id = None, None
                    on_result(payload)
                    return False
        except (EOFError, OSError):
            return True
        return False

    def _replace(self, w: _Worker) -> _Worker:
        self._kill(w)
        return self._spawn()

    def _kill(self, w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()

    def _shutdown(self, w: _Worker) -> None:
        if w.task is None and w.process.is_alive():
            try:
                w.conn.send(None)
                w.process.join(timeout=2)
            except (OSError, BrokenPipeError):
                pass
        self._kill(w)


def _death_message(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (likely out of memory)" if name == "SIGKILL" else ""
        return f"the worker processing this file died with {name}{hint}"
    return f"the worker processing this file exited unexpectedly (status {code})"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
