"""The local engine: worker processes run the prepare stage, this process the finish stage.

Each worker builds the prepare stage once (the chain's extractors: filterbanks, weights) and
takes one file at a time over a pipe, so a worker that crashes (a codec segfault, an
out-of-memory kill) or overruns its file's time limit costs only that file: it is reported as an
error row and the worker is replaced (`WorkerPool`, which the Ray engine's actors use too).
Files are handed out longest first so one long recording does not finish alone at the end.
With a finish stage (`--backend torch`), this process computes device batches in a thread
while the pool keeps preparing files.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

from audiokit.config import Config
from audiokit.pipeline import Task, error_result


def _worker_main(conn, stages, log_path, parent: int, torch_threads: int = 1) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    _quiet_codecs(log_path)
    _limit_threads()
    reuse_freed_memory()
    # Models (embeddings) run torch in each worker: share the cores, workers × threads ≤ cores.
    os.environ.setdefault("AUDIOKIT_TORCH_THREADS", str(torch_threads))

    preparer = stages.preparer()
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

        outcome = preparer.process(task, on_open=on_open)
        conn.send(("done", task_id, outcome))


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
    """Worker processes on this machine run the prepare stage; this process runs the finish
    stage (when the chain has one) in a thread of its own and reports to the outbox."""

    def __init__(self, *, workers: int | None = None, log_path: str | None = None, **_ignored):
        self.n_workers = max(1, workers or default_workers())
        self.log_path = log_path
        self.stopping = False

    def stop(self) -> None:
        """Hand out no more files; files in flight are abandoned (not committed)."""
        self.stopping = True

    def run(self, tasks: list[Task], stages, outbox) -> None:
        pool = WorkerPool(stages, min(self.n_workers, len(tasks)), log_path=self.log_path, engine=self)
        try:
            finisher = stages.finisher()
            if finisher is None:
                pool.run(tasks, outbox.put, outbox.tick)
            else:
                _FinishThread(finisher, outbox, self).run(lambda put: pool.run(tasks, put, None))
        finally:
            pool.close()


class WorkerPool:
    """Worker processes that each build the prepare stage once and take one file at a time.

    A worker that crashes or overruns its file's time limit costs only that file (a `crash` or
    `timeout` row) and is replaced. `run` can be called again with more tasks; the workers
    stay until `close`. `engine.stopping` (when given) ends a run early."""

    def __init__(self, stages, workers: int, *, log_path: str | None = None, engine=None):
        self.stages = stages
        self.n_workers = max(1, workers)
        self.log_path = log_path
        self.engine = engine
        self.limits = _TimeLimits(stages.config, stages.seconds_per_audio_hour())
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._ctx = multiprocessing.get_context(method)
        self.workers: list[_Worker] = []
        self._next_id = 0

    @property
    def stopping(self) -> bool:
        return self.engine is not None and self.engine.stopping

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        torch_threads = max(1, default_workers() // self.n_workers)
        process = self._ctx.Process(
            target=_worker_main, args=(child, self.stages, self.log_path, os.getpid(), torch_threads), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task], put: Callable, tick: Callable | None) -> None:
        """The prepare stage of every task, longest file first; `put` each outcome; `tick`
        about once a second, so finished files are committed while a slow file holds a worker."""
        queue = deque(sorted(tasks, key=lambda t: t.file.size_bytes, reverse=True))
        if queue and not self.workers and self._ctx.get_start_method() == "fork":
            # Imported once here rather than by every worker on its first file: on 2 cores,
            # a 34-minute corpus ran 4 % faster (scripts/bench.py).
            self.stages.preload()
        while len(self.workers) < min(self.n_workers, len(queue)):
            self.workers.append(self._spawn())
        workers = self.workers
        while True:
            for w in workers:
                if w.task is None and queue and not self.stopping:
                    w.task_id, w.task = self._next_id, queue.popleft()
                    self._next_id += 1
                    w.deadline = time.monotonic() + self.limits.for_duration(None)
                    w.conn.send((w.task_id, w.task))
            busy = [w for w in workers if w.task is not None]
            if not busy or self.stopping:
                return
            now = time.monotonic()
            timeout = max(0.0, min(w.deadline for w in busy) - now)
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=min(timeout, 1.0))
            if tick is not None:
                tick()
            for i, w in enumerate(workers):
                if w.task is None:
                    continue
                gone = False
                if w.conn in ready or w.process.sentinel in ready:
                    gone = self._service(w, put)
                if w.task is not None and (gone or not w.process.is_alive()):
                    w.process.join(timeout=5)
                    put(error_result(w.task, self.stages.config, "crash", _death_message(w.process)))
                    workers[i] = self._replace(w)
                elif w.task is not None and time.monotonic() > w.deadline:
                    message = "processing took longer than the file's time limit (run.file_timeout)"
                    put(error_result(w.task, self.stages.config, "timeout", message))
                    workers[i] = self._replace(w)

    def close(self) -> None:
        for w in self.workers:
            self._shutdown(w)
        self.workers = []

    def _service(self, w: _Worker, put: Callable) -> bool:
        """Read the worker's messages; True if its end of the pipe is gone (it died)."""
        try:
            while w.conn.poll():
                kind, task_id, payload = w.conn.recv()
                if task_id != w.task_id:
                    continue
                if kind == "open":
                    w.deadline = time.monotonic() + self.limits.for_duration(payload)
                elif kind == "done":
                    w.task, w.task_id = None, None
                    put(payload)
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


class _TimeLimits:
    """A file's time limit: `run.file_timeout` seconds per hour of audio (raised by slow
    extractors), at least `run.min_file_timeout`; the full hour's until its length is known."""

    def __init__(self, config: Config, seconds_per_hour: float):
        self.seconds_per_hour = seconds_per_hour
        self.minimum = config.run.min_file_timeout

    def for_duration(self, duration_s: float | None) -> float:
        if duration_s is None:
            return max(self.minimum, self.seconds_per_hour)
        return max(self.minimum, duration_s / 3600.0 * self.seconds_per_hour)


_END = object()


class _FinishThread:
    """Runs the finish stage in a thread of its own while the pool prepares in this one.

    Every outcome, error rows included, passes through that thread in arrival order, so the
    outbox is only ever called from one thread. The pool blocks while prepared files worth
    more than two device batches wait (bounded memory when the device is the slower side)."""

    def __init__(self, finisher, outbox, engine: LocalEngine):
        self.finisher, self.outbox, self.engine = finisher, outbox, engine
        self.inbox: queue.Queue = queue.Queue()
        self.room = threading.Condition()
        self.queued = 0.0  # device batches prepared but not finished yet
        self.failure: list[BaseException] = []

    def run(self, prepare_all: Callable[[Callable], None]) -> None:
        thread = threading.Thread(target=self._loop, name="audiokit-finish", daemon=True)
        thread.start()
        try:
            prepare_all(self._put)
        finally:
            self.inbox.put(_END)
            thread.join()
            self.finisher.abandon()  # held when the run stopped: never committed
        if self.failure:
            raise self.failure[0]

    def _put(self, outcome) -> None:
        from audiokit.stages import Prepared

        load = self.finisher.load_of(outcome) if isinstance(outcome, Prepared) else 0.0
        with self.room:
            self.room.wait_for(lambda: self.queued < 2.0 or self.failure)
            self.queued += load
        self.inbox.put(outcome)

    def _report(self, outcomes) -> None:
        for outcome in outcomes:
            self.outbox.put(outcome)

    def _flushed(self, load: float, outcomes) -> None:
        self._report(outcomes)
        with self.room:
            self.queued -= load
            self.room.notify_all()

    def _loop(self) -> None:
        from audiokit.stages import Prepared

        finisher = self.finisher
        try:
            while True:
                wait_s = finisher.seconds_until_due()
                try:
                    item = self.inbox.get(timeout=1.0 if wait_s is None else min(wait_s, 1.0))
                except queue.Empty:
                    if finisher.due():
                        load = finisher.load
                        self._flushed(load, finisher.flush())
                    self.outbox.tick()
                    continue
                if item is _END:
                    if not self.engine.stopping:
                        load = finisher.load
                        self._flushed(load, finisher.flush())
                    return
                if not isinstance(item, Prepared):
                    self.outbox.put(item)
                    continue
                load = finisher.load + finisher.load_of(item)
                ready = finisher.add(item)
                if ready:
                    self._flushed(load, ready)
        except BaseException as exc:  # noqa: BLE001 - a commit that failed: stop the run, re-raise there
            self.failure.append(exc)
            self.engine.stop()
            with self.room:
                self.room.notify_all()


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
