"""Terminal progress (rich, on stderr): files, audio hours, rate and an ETA from audio seconds."""

from __future__ import annotations

import sys
import time

from audiokit.api import Progress


class AudioEta:
    """Time left, from seconds of audio rather than file counts (long files go first, so a
    count-based estimate starts far too high).

    The audio still to come is estimated from the bytes still to come, at the seconds of audio
    per byte seen so far for files of the same extension (all files, for an extension not seen
    yet); the time left is that audio over the audio seconds done per wall second."""

    def __init__(self, files):
        self.pending = {f.file_id: (_extension(f.relpath), f.size_bytes) for f in files}
        self.bytes_done: dict[str, int] = {}
        self.audio_done: dict[str, float] = {}

    def advance(self, file_id: str, audio_s: float) -> None:
        ext, size = self.pending.pop(file_id, ("", 0))
        if audio_s > 0:
            self.bytes_done[ext] = self.bytes_done.get(ext, 0) + size
            self.audio_done[ext] = self.audio_done.get(ext, 0.0) + audio_s

    def seconds_left(self, elapsed_s: float) -> float | None:
        """None until some audio is done; 0 when nothing is left."""
        if not self.pending:
            return 0.0
        audio = sum(self.audio_done.values())
        if audio <= 0 or elapsed_s <= 0:
            return None
        overall = audio / sum(self.bytes_done.values())
        left = 0.0
        for ext, size in self.pending.values():
            per_byte = self.audio_done[ext] / self.bytes_done[ext] if ext in self.bytes_done else overall
            left += size * per_byte
        return left / (audio / elapsed_s)


def _extension(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def error_line(row: dict) -> str:
    """One failed file, the same line with or without the progress bar."""
    return f"audiokit: error: {row['relpath']}: {row['error_kind']}: {row['error']}"


def warning_line(message: str) -> str:
    return f"audiokit: warning: {message}"


class TerminalProgress(Progress):
    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self._progress = None
        self._task = None
        self._audio_s = 0.0
        self._eta: AudioEta | None = None
        self._started = 0.0

    def start(self, files) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as Bar

        self._eta = AudioEta(files)
        self._started = time.monotonic()
        self._progress = Bar(
            TextColumn("[bold]extract"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[hours]:.2f} h audio · {task.fields[rate]} · ETA {task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("extract", total=len(files), hours=0.0, rate="", eta="–")
        self._progress.start()

    def advance(self, file, result) -> None:
        row = result.row
        audio_s = (row["duration_s"] or 0.0) if row["status"] == "ok" else 0.0
        self._audio_s += audio_s
        self._eta.advance(file.file_id, audio_s)
        if row["status"] != "ok":
            self._progress.console.print(error_line(row), markup=False, soft_wrap=True)
        elapsed = time.monotonic() - self._started
        rate = f"{self._audio_s / elapsed:.0f}× real time" if elapsed > 0 else ""
        left = self._eta.seconds_left(elapsed)
        eta = "–" if left is None else _clock(left)
        self._progress.update(self._task, advance=1, hours=self._audio_s / 3600.0, rate=rate, eta=eta)

    def warn(self, message: str) -> None:
        self.console.print(warning_line(message), markup=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class QuietProgress(Progress):
    """Non-TTY runs (cron): warnings and per-file errors as plain lines on stderr, nothing else."""

    def __init__(self, show_errors: bool = True):
        self.show_errors = show_errors

    def advance(self, file, result) -> None:
        if self.show_errors and result.row["status"] != "ok":
            print(error_line(result.row), file=sys.stderr)

    def warn(self, message: str) -> None:
        if self.show_errors:
            print(warning_line(message), file=sys.stderr)
