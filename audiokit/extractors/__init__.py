"""Built-in extractors; importing this package fills the registry."""

from audiokit.extractors import mel, segments, spectral  # noqa: F401  (registration side effect)
from audiokit.extractors.base import REGISTRY, Extractor, register

__all__ = ["REGISTRY", "Extractor", "register"]


def describe() -> dict:
    """Every registered extractor with its parameters, types, defaults and help."""
    import dataclasses
    import typing

    out = {}
    for name, cls in sorted(REGISTRY.items()):
        hints = typing.get_type_hints(cls.Params)
        params = []
        for f in dataclasses.fields(cls.Params):
            hint = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            params.append({"name": f.name, "type": hint, "default": f.default, "help": f.metadata.get("help", "")})
        out[name] = {"table": cls.table, "description": cls.description, "params": params}
    return out
