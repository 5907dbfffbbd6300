"""Exception hierarchy. The CLI maps each family to one exit status and a one-line message."""

from __future__ import annotations


class AudiokitError(Exception):
    """Base class of every error audiokit raises on purpose."""


class ConfigError(AudiokitError):
    """A bad command line or configuration: nothing is written (exit 2)."""


class OutputError(AudiokitError):
    """The run cannot proceed on this output: locked, unwritable, disk full (exit 3).

    `summary` is the run's RunSummary when a run had started (for `--json`)."""

    def __init__(self, message: str, *, summary=None):
        super().__init__(message)
        self.summary = summary


class FileError(AudiokitError):
    """A problem with one input file; it becomes a `files` row, never stops the run.

    `kind` is the `error_kind` column: decode, empty, unsupported, unreadable, extract,
    crash, timeout.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class DecodeError(FileError):
    def __init__(self, message: str, kind: str = "decode", backend: str | None = None):
        super().__init__(kind, message)
        self.backend = backend  # which decoder gave up, when one had opened the file


class ExtractorError(FileError):
    def __init__(self, message: str):
        super().__init__("extract", message)


class Interrupted(AudiokitError):
    """SIGINT/SIGTERM: the run stopped after committing what was finished."""

    def __init__(self, signum: int, *, summary=None):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name}; finished files were committed")
        self.signum = signum
        self.exit_code = 128 + signum
        self.summary = summary
