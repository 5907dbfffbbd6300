"""audiokit: directories of audio → Parquet feature tables.

    import audiokit
    summary = audiokit.extract(["recordings/"], "features/")

Heavy modules are imported on first use, so `audiokit --help` starts fast.
"""

__version__ = "0.1.0"


def extract(*args, **kwargs):
    from audiokit.api import extract as _extract

    return _extract(*args, **kwargs)


def info(*args, **kwargs):
    from audiokit.api import info as _info

    return _info(*args, **kwargs)


def open(root):  # audiokit.open(OUT), like io.open
    """A read-only snapshot of dataset `root`: files, tables, one file's frames, a torch Dataset."""
    from audiokit.reader import open as _open

    return _open(root)


__all__ = ["__version__", "extract", "info", "open"]
