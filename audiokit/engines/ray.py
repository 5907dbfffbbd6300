"""`--engine ray`: the prepare stage on Ray actors, across the machines of a cluster.

The driver (the `audiokit extract` process) discovers, plans and commits exactly as with the
local engine: it is the only writer. The planned tasks become a Ray Data dataset, longest
file first; a pool of CPU actors (one per CPU of the cluster, or `--workers`) runs the prepare
stage and a single finish actor (with a GPU when the cluster has one) the device batches of
`--backend torch`. Workers send back each file's outcome as local workers do: its `files` row
and its rows, in memory when they are small and as a file in the staging area of OUT when they
are large (a long recording's): INPUT and OUT must be on storage every node sees under the
same paths.

Ray Data retries and drops things on its own; none of that may decide what happens to a file:
- each actor runs its files in a `WorkerPool` of one child process, so a codec that crashes
  costs its file a `crash` row and a hung file a `timeout` row, as locally, and the actor
  itself never raises: actors get `max_restarts=0`, `max_task_retries=0`;
- should a block be lost anyway (a node gone), the driver compares the files it planned with
  the outcomes it received and writes a `crash` row for each missing one;
- a killed driver takes its actors with it; the next run resumes from the `files` table.
"""

from __future__ import annotations

import os
import pickle
import queue
import threading
import warnings

from audiokit.engines.local import WorkerPool, default_workers
from audiokit.errors import OutputError
from audiokit.pipeline import Task, error_result

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray Data reports each dataset's plan and timing on stderr; a cron job's mail should hold the
# problems with files, as with the local engine, and nothing else.
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
import ray  # noqa: E402  (after the environment settings)
from ray.util.annotations import RayDeprecationWarning  # noqa: E402

OBJECT_STORE_BYTES = 512 << 20
BLOCKS_PER_ACTOR = 4  # a local instance's object store: outcomes are small
_END = object()
_connected: dict = {}  # how this process's runs last set Ray up ("options" of ray.init)


class _Prepare:
    """A Ray actor's prepare stage: one child process at a time, isolated as locally."""

    def __init__(self, stages, log_path):
        self.pool = WorkerPool(stages, 1, log_path=log_path)

    def __call__(self, batch: dict) -> dict:
        outcomes = []
        tasks = [pickle.loads(t) for t in batch["task"]]
        self.pool.run(tasks, outcomes.append, None)
        return {"outcome": [pickle.dumps(o) for o in outcomes]}


class _Finish:
    """The finish stage (device batches across the files of each block that reaches it)."""

    def __init__(self, stages):
        self.finisher = stages.finisher()

    def __call__(self, batch: dict) -> dict:
        from audiokit.stages import Prepared

        ready = []
        for blob in batch["outcome"]:
            outcome = pickle.loads(blob)
            if isinstance(outcome, Prepared):
                ready += self.finisher.add(outcome)
            else:
                ready.append(outcome)
        ready += self.finisher.flush()
        return {"outcome": [pickle.dumps(o) for o in ready]}


class RayEngine:
    def __init__(self, *, workers: int | None = None, log_path: str | None = None, ray_address: str | None = None):
        self.workers = workers
        self.log_path = log_path
        self.address = ray_address
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    def _connect(self) -> bool:
        """Set Ray up for this run (True) or reuse the instance the process has (False)."""
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if self.address is None:  # a new instance on this machine, even if a cluster runs here
            options.update(address="local", num_cpus=self.workers or default_workers(), object_store_memory=OBJECT_STORE_BYTES)
        else:
            options["address"] = self.address
        if ray.is_initialized():
            if _connected.get("options") in (None, options):
                return False  # the caller's own Ray, or the one an earlier run in this process set up
            ray.shutdown()  # an earlier run's, set up for another address or size
        try:
            ray.init(**options)
        except Exception as exc:  # noqa: BLE001 - Ray's many ways of not connecting
            where = "start a local Ray instance" if self.address is None else f"connect to the Ray cluster at {self.address}"
            raise OutputError(f"cannot {where}: {type(exc).__name__}: {exc}") from None
        _connected["options"] = options
        return True

    def run(self, tasks: list[Task], stages, outbox) -> None:
        # Ray is not shut down after a run: its own exit hook does that when a library caller's
        # Python process ends (a later run in it reuses the instance), and the `audiokit`
        # command leaves without exit hooks, the instance it started going with it (Ray ties
        # those processes to the life of the thread that started them). Shutting down took
        # 1.3 s of every command. Started from another thread, the instance would die with
        # that thread while still looking connected: then it is shut down after the run.
        if not tasks:
            return
        started = self._connect()
        try:
            self._run(tasks, stages, outbox)
        finally:
            if started and threading.current_thread() is not threading.main_thread():
                ray.shutdown()
                _connected.clear()

    def _run(self, tasks: list[Task], stages, outbox) -> None:
        import ray.data
        from ray.data import ActorPoolStrategy

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.verbose_stats_logs = False
        context.max_errored_blocks = -1  # a lost block is the driver's business (crash rows)
        actors = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ordered = sorted(tasks, key=lambda t: t.file.size_bytes, reverse=True)
        # Ray Data's actors restart and retry forever by default: a file that kills its actor
        # would come back again and again. Ray 2.60 has no named parameter for these yet.
        once = {"max_restarts": 0, "max_task_retries": 0}
        # Blocks are what actors share out, longest files first; a few per actor keep the load
        # even while each block's files go to an actor in one call (Ray's cost is per call).
        blocks = min(len(ordered), BLOCKS_PER_ACTOR * actors)
        data = ray.data.from_items([{"task": pickle.dumps(t)} for t in ordered], override_num_blocks=blocks)
        warnings.filterwarnings("ignore", category=RayDeprecationWarning, module=__name__)
        data = data.map_batches(
            _Prepare, fn_constructor_args=(stages, self.log_path), batch_size=None, batch_format="numpy",
            compute=ActorPoolStrategy(size=min(actors, len(ordered))), num_cpus=1, **once,
        )
        if stages.has_finish:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and stages.device != "cpu" else 0
            data = data.map_batches(
                # No CPU reserved: the prepare actors hold them all, and this one mostly waits
                # on its device (reserving one would leave it unscheduled on a small cluster).
                _Finish, fn_constructor_args=(stages,), batch_size=64, batch_format="numpy",
                compute=ActorPoolStrategy(size=1), num_cpus=0, num_gpus=gpus, **once,
            )
        received = self._drain(data, outbox)
        if not self.stopping:
            for task in ordered:
                if task.file.file_id not in received:
                    outbox.put(error_result(task, stages.config, "crash", "the Ray worker processing this file was lost"))

    def _drain(self, data, outbox) -> set[str]:
        """Outcomes from a thread that iterates the dataset; the outbox is called from this
        thread only, with a tick about once a second."""
        inbox: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def iterate() -> None:
            try:
                for batch in data.iter_batches(batch_size=1, batch_format="numpy"):
                    for blob in batch["outcome"]:
                        inbox.put(pickle.loads(blob))
                    if self.stopping:
                        return
            except BaseException as exc:  # noqa: BLE001 - reported below, in the driver's thread
                failure.append(exc)
            finally:
                inbox.put(_END)

        thread = threading.Thread(target=iterate, name="audiokit-ray", daemon=True)
        thread.start()
        received: set[str] = set()
        while True:
            try:
                item = inbox.get(timeout=1.0)
            except queue.Empty:
                outbox.tick()
                if self.stopping:
                    break
                continue
            if item is _END:
                break
            received.add(item.file_id)
            if not self.stopping:
                outbox.put(item)
        if failure and not self.stopping:
            raise OutputError(f"the Ray run could not go on: {type(failure[0]).__name__}: {failure[0]}")
        return received


__all__ = ["RayEngine"]
