"""Built-in extractors; importing this package fills the registry.

Other packages add extractors through the `audiokit.extractors` entry-point group, or a module
named in the `AUDIOKIT_PLUGINS` environment variable (comma-separated), whose import calls
`@register`.
"""

import importlib
import os

from audiokit.extractors import chroma, embeddings, loudness, mel, rhythm, segments, spectral, summary  # noqa: F401  (registration side effect)
from audiokit.extractors.base import REGISTRY, Extractor, register

__all__ = ["REGISTRY", "Extractor", "register"]


def _load_plugins() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group="audiokit.extractors"):
        entry.load()
    for name in filter(None, (m.strip() for m in os.environ.get("AUDIOKIT_PLUGINS", "").split(","))):
        importlib.import_module(name)


_load_plugins()


def _jsonable(value):
    """inf (chroma's norm) as the string "inf": JSON has no infinity."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def describe() -> dict:
    """Every registered extractor with its parameters, types, defaults and help."""
    import dataclasses
    import typing

    from audiokit.config import allowed

    out = {}
    for name, cls in sorted(REGISTRY.items()):
        hints = typing.get_type_hints(cls.Params)
        params = []
        for f in dataclasses.fields(cls.Params):
            hint = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            params.append(
                {
                    "name": f.name,
                    "type": hint,
                    "default": _jsonable(f.default),
                    "help": f.metadata.get("help", ""),
                    "allowed": allowed(f, hints[f.name]),
                    "choices": _jsonable(f.metadata.get("choices")),
                    "bounds": f.metadata.get("bounds", {}),
                }
            )
        out[name] = {"table": cls.table, "description": cls.description, "params": params}
    return out
