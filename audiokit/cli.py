"""`audiokit` command line: parses, calls the library, maps errors to exit statuses.

0 every file ok · 1 some file failed (each is a row in `files`) · 2 usage or config error
(nothing written) · 3 the run could not proceed (output locked or not writable) ·
130/143 stopped by SIGINT/SIGTERM after committing finished files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn directories of audio into Parquet feature tables (MFCC, log-mel, spectral).",
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"audiokit: error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def extract(
    inputs: list[str] = typer.Argument(None, help="Directories (walked recursively), files or globs."),
    out: Path = typer.Option(..., "-o", "--out", help="Output dataset directory."),
    config: Path | None = typer.Option(None, "-c", "--config", help="TOML config (default: configs/default.toml)."),
    extractors: str | None = typer.Option(None, "-x", "--extractors", help="Comma-separated extractors to run, e.g. mfcc,spectral."),
    set_: list[str] = typer.Option([], "--set", help="Override a parameter: SECTION.PARAM=VALUE (repeatable)."),
    files_from: str | None = typer.Option(None, "--files-from", help="Read paths, one per line, from FILE ('-' = stdin)."),
    include: list[str] = typer.Option([], "--include", help="Only files whose relative path or name matches this glob."),
    exclude: list[str] = typer.Option([], "--exclude", help="Skip files whose relative path or name matches this glob."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: number of cores)."),
    backend: str = typer.Option("numpy", "--backend", help="numpy or torch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (torch backend)."),
    force: bool = typer.Option(False, "--force", help="Recompute every file, even unchanged ones."),
    prune: bool = typer.Option(False, "--prune", help="Drop rows of files no longer in the input."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first file that fails."),
    retry_failed: bool = typer.Option(True, "--retry-failed/--no-retry-failed", help="Retry files that failed before."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no per-file messages."),
    progress: bool = typer.Option(False, "--progress", help="Show the progress bar even when stderr is not a terminal."),
) -> None:
    """Extract features from INPUT... into the dataset OUT (incremental: unchanged files are skipped)."""
    from audiokit.api import extract as run_extract
    from audiokit.discover import read_path_list
    from audiokit.errors import ConfigError, Interrupted, OutputError
    from audiokit.progress import QuietProgress, TerminalProgress

    inputs = list(inputs or [])
    if files_from is not None:
        try:
            if files_from == "-":
                inputs += read_path_list(sys.stdin)
            else:
                with open(files_from, encoding="utf-8", errors="surrogateescape") as f:
                    inputs += read_path_list(f)
        except OSError as exc:
            _fail(f"cannot read --files-from {files_from}: {exc.strerror or exc}", 2)
    if workers is not None and workers < 1:
        _fail("--workers must be at least 1", 2)
    chosen = [x.strip() for x in extractors.split(",") if x.strip()] if extractors else None
    show_bar = not quiet and (progress or sys.stderr.isatty())
    reporter = TerminalProgress() if show_bar else QuietProgress(show_errors=not quiet)
    try:
        summary = run_extract(
            inputs,
            str(out),
            config_path=str(config) if config else None,
            extractors=chosen,
            overrides=set_,
            include=include,
            exclude=exclude,
            workers=workers,
            backend=backend,
            device=device,
            force=force,
            prune=prune,
            fail_fast=fail_fast,
            retry_failed=retry_failed,
            progress=reporter,
        )
    except ConfigError as exc:
        _fail(str(exc), 2)
    except OutputError as exc:
        _fail(str(exc), 3)
    except Interrupted as exc:
        _fail(str(exc), exc.exit_code)
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    elif not quiet:
        typer.echo(
            f"audiokit: {summary.processed} processed, {summary.skipped} skipped, {summary.failed} failed, "
            f"{summary.audio_s / 3600:.2f} h of audio in {summary.wall_s:.1f} s → {summary.output}",
            err=True,
        )
    raise typer.Exit(summary.exit_status)


@app.command()
def info(
    out: Path = typer.Argument(..., help="A dataset written by `audiokit extract`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What a dataset holds: files ok/failed, hours of audio, tables and rows, config, last runs."""
    from audiokit.api import info as dataset_info
    from audiokit.errors import ConfigError

    try:
        data = dataset_info(str(out))
    except ConfigError as exc:
        _fail(str(exc), 2)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    typer.echo(f"{data['output']}")
    typer.echo(f"  files: {data['files']} ({data['ok']} ok, {data['failed']} failed)  audio: {data['hours']:.3f} h")
    for kind, count in sorted(data["errors_by_kind"].items()):
        typer.echo(f"    {kind}: {count}")
    for name, t in data["tables"].items():
        typer.echo(f"  {name:<12} {t['rows']:>12,} rows  {t['parts']:>4} parts  {t['bytes'] / 1e6:>9.1f} MB")
    if data["config"]:
        typer.echo(f"  chain: {', '.join(data['config']['chain'])}  (config {data['config_hash']})")
    for run in data["last_runs"]:
        typer.echo(
            f"  run {run['started']}: {run['processed']} processed, {run['skipped']} skipped, "
            f"{run['failed']} failed, exit {run['exit_status']}" + (f", stopped by {run['stopped']}" if run["stopped"] else "")
        )


@app.command("extractors")
def list_extractors(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every extractor with its parameters and defaults."""
    from audiokit.extractors import describe

    data = describe()
    if as_json:
        typer.echo(json.dumps(data))
        return
    for name, spec in data.items():
        typer.echo(f"{name}  →  table {spec['table']}: {spec['description']}")
        for p in spec["params"]:
            default = "none" if p["default"] is None else json.dumps(p["default"])
            typer.echo(f"    {p['name']:<16} {p['type']:<12} {default:<12} {p['help']}")


models_app = typer.Typer(no_args_is_help=True, help="Pretrained models for the embeddings extractor.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Built-in models: name, source, dimensions, sample rate, licence, weights present."""
    from audiokit.models import BUILTIN

    data = [recipe.describe() for recipe in BUILTIN.values()]
    if as_json:
        typer.echo(json.dumps(data))
        return
    for m in data:
        present = "present" if m["weights_present"] else "missing"
        typer.echo(f"{m['name']:<8} {m['dim']:>5}-d  {m['sample_rate']:>5} Hz  weights {present:<8} {m['source']}  [{m['licence']}]")
        typer.echo(f"         {m['description']}")


@models_app.command("pull")
def models_pull(name: str = typer.Argument(..., help="A model from `audiokit models list`.")) -> None:
    """Download a model's official checkpoint (pinned sha256, resumable) into the model dir
    ($AUDIOKIT_MODEL_DIR, default ~/.cache/audiokit/models)."""
    from audiokit.models import DownloadError, ModelError, pull

    def on_progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            shown = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            typer.echo(f"\r{name}: {shown}", err=True, nl=False)

    try:
        path = pull(name, on_progress=on_progress)
    except (ModelError, DownloadError) as exc:
        _fail(str(exc), 1 if isinstance(exc, DownloadError) else 2)
    typer.echo(str(path))


@app.command()
def show(
    out: Path = typer.Argument(..., help="A dataset written by `audiokit extract`."),
    path: str = typer.Argument(..., help="One file of it: relpath, file_id or absolute path."),
    output: Path | None = typer.Option(None, "-o", "--output", help="PNG to write (default: the file's name + .png)."),
    channel: int | None = typer.Option(None, "--channel", help="Channel to draw (datasets made with audio.channels=each; default 0)."),
) -> None:
    """A picture of one file: waveform envelope, log-mel, segments, loudness or RMS, status."""
    from audiokit.errors import ConfigError, OutputError
    from audiokit.plots import show_file

    try:
        written = show_file(str(out), path, str(output) if output else None, channel=channel)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except OutputError as exc:
        _fail(str(exc), 3)
    typer.echo(written)


@app.command()
def report(
    out: Path = typer.Argument(..., help="A dataset written by `audiokit extract`."),
    output: Path | None = typer.Option(None, "-o", "--output", help="HTML page to write (default: report.html here)."),
    figures: int = typer.Option(4, "--figures", help="Per-file figures to include (failed files are listed, not drawn)."),
) -> None:
    """One self-contained HTML page to audit a dataset: statuses, failures, distributions, runs."""
    from audiokit.errors import ConfigError, OutputError
    from audiokit.plots import write_report

    try:
        written = write_report(str(out), str(output) if output else None, figures=figures)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except OutputError as exc:
        _fail(str(exc), 3)
    typer.echo(written)


@app.command()
def export(
    out: Path = typer.Argument(..., help="A dataset written by `audiokit extract`."),
    table: str = typer.Option(..., "--table", "-t", help="Table to export: segments, mfcc, logmel, spectral, embeddings …"),
    format: str = typer.Option(..., "--format", "-f", help="segments: rttm, csv, audacity, textgrid; frame tables: npy, csv."),
    output: str | None = typer.Option(None, "-o", "--output", help="File (rttm, csv; default stdout) or directory (npy, audacity, textgrid)."),
    where: str | None = typer.Option(None, "--where", help="Only files whose files row matches, e.g. \"status = 'ok' and duration_s > 10\"."),
    include: list[str] = typer.Option([], "--include", help="Only files whose relpath or name matches this glob (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary (on stderr when the export goes to stdout)."),
) -> None:
    """Write a table in a format other tools read (RTTM, CSV, Audacity labels, TextGrid, .npy)."""
    from audiokit.errors import ConfigError, OutputError
    from audiokit.export import export as run_export

    try:
        summary = run_export(str(out), table=table, format=format, out=output, where=where, include=include)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except OutputError as exc:
        _fail(str(exc), 3)
    if as_json:
        typer.echo(json.dumps(summary.to_dict()), err=output is None)
    elif output is not None:
        typer.echo(f"audiokit: {summary.rows} rows of {summary.files} files → {summary.output}", err=True)


def main() -> None:
    """The console script. Once the command has returned, everything it wrote is committed,
    fsynced and closed, so it leaves without tearing the interpreter down: module teardown only
    frees memory, and costs ~0.1 s that cron jobs over small drops would pay on every run."""
    # The parallelism is worker processes, each pinned to one BLAS thread. Say so before numpy
    # loads OpenBLAS: otherwise its thread pools start, spin, and start again in every forked
    # worker: up to 0.25 s of CPU per run, a third of a run over one short file.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (`audiokit info ... | head`): nothing to add
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
