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
from typer.core import TyperArgument, TyperCommand

EXIT_STATUS_HELP = """Exit status: 0 every file ok; 1 finished, some file failed (each failure is a row in
`files`); 2 usage or config error, nothing written; 3 output locked by another run or not
writable; 130/143 stopped by SIGINT/SIGTERM after committing the files already finished."""

EXTRACT_EXAMPLES = """\b
Examples:
  audiokit extract recordings/ -o features/
  audiokit extract /dumps -o /features -c speech --set mfcc.n_mfcc=40 --json --quiet"""


class _Command(TyperCommand):
    """Usage lines as man pages write them (`OUT [PATH]`, `[INPUT]...`): arguments are named in
    the usage line and described in the command's help text, not listed with a type column."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


def _version(value: bool) -> None:
    if value:
        from audiokit import __version__

        typer.echo(f"audiokit {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    no_args_is_help=True,
    help="Turn directories of audio into Parquet feature tables (MFCC, log-mel, spectral, segments, embeddings).",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: real metavars, and the same text on a terminal and in a log
)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn directories of audio into Parquet feature tables (MFCC, log-mel, spectral, segments, embeddings)."""


def _fail(message: str, code: int) -> None:
    typer.echo(f"audiokit: error: {message}", err=True)
    raise typer.Exit(code)


@app.command(cls=_Command, epilog=EXIT_STATUS_HELP + "\n\n" + EXTRACT_EXAMPLES)
def extract(
    inputs: list[str] = typer.Argument(None, metavar="INPUT", hidden=True),
    out: Path = typer.Option(..., "-o", "--out", metavar="OUT", help="Output dataset directory (new, empty, or an audiokit dataset)."),
    config: str | None = typer.Option(
        None, "-c", "--config", metavar="CONFIG",
        help="A TOML config file, or the name of a shipped one: default, speech, music (default: default).",
    ),
    extractors: str | None = typer.Option(None, "-x", "--extractors", metavar="NAME,...", help="Extractors to run instead of the config's chain, e.g. mfcc,spectral."),
    set_: list[str] = typer.Option([], "--set", metavar="SECTION.PARAM=VALUE", help="Override a parameter (repeatable); `audiokit extractors` lists them."),
    files_from: str | None = typer.Option(None, "--files-from", metavar="FILE", help="Read more paths, one per line, from FILE ('-' = stdin)."),
    include: list[str] = typer.Option([], "--include", metavar="GLOB", help="Only files whose relative path or name matches (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", metavar="GLOB", help="Skip files whose relative path or name matches (repeatable)."),
    workers: int | None = typer.Option(None, "--workers", metavar="N", help="Worker processes (default: number of cores)."),
    backend: str = typer.Option("numpy", "--backend", metavar="numpy|torch", help="Compute backend."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Device of the torch backend."),
    force: bool = typer.Option(False, "--force", help="Recompute every file, even unchanged ones."),
    prune: bool = typer.Option(False, "--prune", help="Drop rows of files no longer in the input."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first file that fails."),
    retry_failed: bool = typer.Option(True, "--retry-failed/--no-retry-failed", help="Retry files that failed before."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no per-file messages."),
    progress: bool = typer.Option(False, "--progress", help="Show the progress bar even when stderr is not a terminal."),
) -> None:
    """Extract features from each INPUT (directories, walked recursively, files or globs) into
    the dataset OUT. Incremental: unchanged files are skipped, changed files redone."""
    from audiokit.api import extract as run_extract
    from audiokit.discover import read_path_list
    from audiokit.errors import ConfigError, Interrupted, OutputError
    from audiokit.progress import QuietProgress, TerminalProgress

    listed: list[str] = []
    if files_from is not None:
        try:
            if files_from == "-":
                listed = read_path_list(sys.stdin)
            else:
                with open(files_from, encoding="utf-8", errors="surrogateescape") as f:
                    listed = read_path_list(f)
        except OSError as exc:
            _fail(f"cannot read --files-from {files_from}: {exc.strerror or exc}", 2)
    if workers is not None and workers < 1:
        _fail("--workers must be at least 1", 2)
    chosen = [x.strip() for x in extractors.split(",") if x.strip()] if extractors is not None else None
    show_bar = not quiet and (progress or sys.stderr.isatty())
    reporter = TerminalProgress() if show_bar else QuietProgress(show_errors=not quiet)
    try:
        summary = run_extract(
            list(inputs or []),
            str(out),
            files_from=listed,
            config_path=config,
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
    except (OutputError, Interrupted) as exc:
        if as_json and exc.summary is not None:
            typer.echo(json.dumps(exc.summary.to_dict()))
        _fail(str(exc), 3 if isinstance(exc, OutputError) else exc.exit_code)
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    elif not quiet:
        typer.echo(
            f"audiokit: {summary.processed} processed, {summary.skipped} skipped, {summary.failed} failed, "
            f"{summary.audio_s / 3600:.2f} h of audio in {summary.wall_s:.1f} s → {summary.output}",
            err=True,
        )
    raise typer.Exit(summary.exit_status)


@app.command(cls=_Command)
def info(
    out: Path = typer.Argument(..., metavar="OUT", hidden=True),
    path: str | None = typer.Argument(None, metavar="PATH", hidden=True),
    failed: bool = typer.Option(False, "--failed", help="List the files that failed: path, error kind, error."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What the dataset OUT holds: files ok/failed, hours of audio, tables and rows, config,
    last runs. With PATH (a file's path, relpath or file_id): that file's row and its rows per
    table."""
    from audiokit import api
    from audiokit.errors import ConfigError

    try:
        if path is not None:
            data = api.file_info(str(out), path)
        elif failed:
            data = api.failures(str(out))
        else:
            data = api.info(str(out))
    except ConfigError as exc:
        _fail(str(exc), 2)
    if as_json:
        typer.echo(json.dumps(data, default=str))
    elif path is not None:
        for key, value in data["file"].items():
            typer.echo(f"  {key:<13} {value}")
        for name, rows in data["tables"].items():
            typer.echo(f"  {name:<13} {rows:,} rows")
    elif failed:
        for f in data:
            typer.echo(f"{f['path']}\t{f['error_kind']}\t{f['error']}")
    else:
        _print_info(data)


def _print_info(data: dict) -> None:
    typer.echo(f"{data['output']}")
    typer.echo(f"  files: {data['files']} ({data['ok']} ok, {data['failed']} failed)  audio: {data['hours']:.3f} h")
    for kind, count in sorted(data["errors_by_kind"].items()):
        typer.echo(f"    {kind}: {count}")
    for name, t in data["tables"].items():
        typer.echo(f"  {name:<12} {t['rows']:>12,} rows  {t['parts']:>4} parts  {t['bytes'] / 1e6:>9.1f} MB")
    if data["config"]:
        typer.echo(f"  chain: {', '.join(data['config']['chain'])}  (config {data['config_hash']})")
    if data["failed"]:
        typer.echo(f"  failures: audiokit info {data['output']} --failed")
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


@models_app.command("pull", cls=_Command)
def models_pull(name: str = typer.Argument(..., metavar="NAME", hidden=True)) -> None:
    """Download the official checkpoint of model NAME (from `audiokit models list`; pinned
    sha256, resumable) into the model dir ($AUDIOKIT_MODEL_DIR, default ~/.cache/audiokit/models)."""
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
