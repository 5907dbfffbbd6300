"""Terminal progress (rich, on stderr): files, audio hours, rate and ETA."""

from __future__ import annotations

import sys

from audiokit.api import Progress


class TerminalProgress(Progress):
    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)
        self._progress = None
        self._task = None
        self._audio_s = 0.0

    def start(self, files) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._progress = Bar(
            TextColumn("[bold]extract"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[hours]:.2f} h audio · {task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("extract", total=len(files), hours=0.0, rate="")
        self._progress.start()

    def advance(self, file, result) -> None:
        if result.row["status"] == "ok":
            self._audio_s += result.row["duration_s"] or 0.0
        else:
            from rich.markup import escape  # names and messages may hold [brackets]

            row = result.row
            self._progress.console.print(
                f"[yellow]error[/] {escape(row['relpath'])}: {row['error_kind']}: {escape(row['error'])}",
                highlight=False,
            )
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{self._audio_s / elapsed:.0f}× real time" if elapsed > 0 else ""
        self._progress.update(self._task, advance=1, hours=self._audio_s / 3600.0, rate=rate)

    def warn(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[yellow]warning[/] {escape(message)}", highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class QuietProgress(Progress):
    """Non-TTY runs (cron): warnings and per-file errors as plain lines on stderr, nothing else."""

    def __init__(self, show_errors: bool = True):
        self.show_errors = show_errors

    def advance(self, file, result) -> None:
        if self.show_errors and result.row["status"] != "ok":
            row = result.row
            print(f"audiokit: error: {row['relpath']}: {row['error_kind']}: {row['error']}", file=sys.stderr)

    def warn(self, message: str) -> None:
        if self.show_errors:
            print(f"audiokit: warning: {message}", file=sys.stderr)
