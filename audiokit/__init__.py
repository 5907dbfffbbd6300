"""audiokit: directories of audio → Parquet feature tables.

    import audiokit
    summary = audiokit.extract("recordings/", "features/")

`extract` and `info` are those of `audiokit.api`, imported on first use so that
`audiokit --help` starts fast.
"""

__version__ = "0.1.0"

_LAZY = {"extract": "audiokit.api", "info": "audiokit.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'audiokit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "extract", "info"]
