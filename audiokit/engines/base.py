"""The engine protocol: how the files of a run get processed, and nothing else.

A run (`audiokit.run`) hands an engine the planned tasks, the `Stages` that process one file
(`prepare` in workers; `finish` in the one process that owns the device, batched across files)
and an `Outbox` that commits what comes back. An engine only schedules: it never names an
extractor, never writes the dataset, and reports every task exactly once, as an `Outcome`:

- a `FileResult` whose `files` row says `ok` or `error` (the file failed: a row, not an
  exception, whatever broke: decoder, extractor, a worker that crashed or overran its time);
- an `OutputFailed` when the output, not the file, failed (disk full, output gone): the
  committer stops the run and the file is left for the next one;

except tasks still unstarted or in flight when `stop()` was called, which it drops (the next
run does them). Engines are registered by name for `--engine`.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, Protocol

from audiokit.errors import ConfigError
from audiokit.store.dataset import FileResult


class OutputFailed(NamedTuple):
    """Writing a file's rows failed for a reason that is not the file's (the output's disk)."""

    file_id: str
    message: str


Outcome = FileResult | OutputFailed


class Outbox(Protocol):
    """Where an engine reports outcomes (from one thread at a time)."""

    def put(self, outcome: Outcome) -> None: ...

    def tick(self) -> None:
        """Called about once a second while files are in flight (commits become timely)."""


class Engine(Protocol):
    def run(self, tasks: list, stages, outbox: Outbox) -> None: ...

    def stop(self) -> None:
        """Start no more tasks; the ones in flight are dropped, not reported."""


# name -> (module, class, the install command when its module does not import)
ENGINES: dict[str, tuple[str, str, str | None]] = {
    "local": ("audiokit.engines.local", "LocalEngine", None),
    "ray": ("audiokit.engines.ray", "RayEngine", "pip install 'audiokit[ray]'"),
}


def create_engine(name: str, **options) -> Engine:
    """The engine registered as `name`, built with `options` (workers, log_path, ray_address…)."""
    if name not in ENGINES:
        raise ConfigError(f"--engine {name!r}; choose from: {', '.join(ENGINES)}")
    module_name, class_name, install = ENGINES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if install is None:
            raise
        raise ConfigError(f"--engine {name} needs {exc.name}, which is not installed: {install}") from None
    return getattr(module, class_name)(**options)


__all__ = ["ENGINES", "Engine", "Outbox", "Outcome", "OutputFailed", "create_engine"]
