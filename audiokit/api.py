"""The library behind the CLI: `extract(...)`, `info(...)`, `failures(...)`, `file_info(...)`."""

from __future__ import annotations

import os
from collections.abc import Iterable

from audiokit.config import Config, load_config
from audiokit.errors import ConfigError
from audiokit.run import Progress, Run, RunSummary

__all__ = ["Progress", "RunSummary", "extract", "failures", "file_info", "info"]


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
    engine: str = "local",
    ray_address: str | None = None,
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
    `overrides` are `SECTION.PARAM=VALUE` strings, as `--set`. `engine` is `local` (worker
    processes on this machine) or `ray` (a Ray cluster at `ray_address`, or a local Ray
    instance when it is None); `backend` (`numpy` or `torch`) and `device` say where features
    are computed.

    Raises ConfigError (bad arguments or config, a missing INPUT, an output directory that is
    not a dataset; nothing written), OutputError (output locked or not writable) and
    Interrupted (SIGINT/SIGTERM, after committing finished files); the last two carry the
    run's `summary`. Per-file problems never raise: they are rows with status `error`,
    counted in `failed`.

        >>> summary = audiokit.extract("recordings/", "features/", extractors=["mfcc"])
        >>> summary.exit_status, summary.tables
    """
    if config is None:
        config = load_config(config_path, extractors=extractors, overrides=overrides)
    backend, device = _resolve_backend(backend, device)
    if engine == "local" and ray_address is not None:
        raise ConfigError("--ray-address needs --engine ray")
    return Run(
        inputs=[os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs],
        listed=[os.fspath(i) for i in files_from],
        out=os.fspath(out),
        config=config,
        include=tuple(include),
        exclude=tuple(exclude),
        engine=engine,
        engine_options={"workers": workers, "ray_address": ray_address},
        backend=backend,
        device=device,
        force=force,
        prune=prune,
        fail_fast=fail_fast,
        retry_failed=retry_failed,
        progress=progress or Progress(),
    ).execute()


def _resolve_backend(backend: str, device: str) -> tuple[str, str]:
    if backend not in ("numpy", "torch"):
        raise ConfigError(f"--backend {backend!r}; choose from: numpy, torch")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}; choose from: auto, cpu, cuda")
    if backend == "numpy":
        if device == "cuda":
            raise ConfigError("--device cuda needs --backend torch")
        return backend, "cpu"
    try:
        from audiokit.dsp.torch_ops import resolve_device

        return backend, resolve_device(device)
    except ImportError:
        raise ConfigError(
            "--backend torch needs PyTorch, which is not installed: pip install 'audiokit[torch]'"
            " (or use --backend numpy)"
        ) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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
    path, its relpath or its file_id. Reads only the parts and row groups holding the file."""
    from audiokit.reader import open as open_dataset

    dataset = open_dataset(out)
    row = dataset.file(path)
    counts = {name: dataset.rows(name, path, columns=["channel"]).num_rows for name in dataset.table_names}
    return {"file": row, "tables": counts}
