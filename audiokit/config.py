"""Resolved configuration: TOML file + `-x` + `--set`, validated against the extractor registry.

A `Config` is frozen and hashable; `extractor_hash(name)` fingerprints everything that changes an
extractor's rows, and is what incremental runs compare.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiokit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA_VERSION = 1
CHANNEL_POLICIES = ("mix", "first", "each")
_SECTIONS = ("input", "audio", "run")


DEFAULT_EXTENSIONS = (
    "wav", "wave", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac", "webm", "mka",
    "wma", "aif", "aiff", "aifc", "au", "snd", "caf", "w64", "rf64", "sph", "nist", "voc",
)


def param(
    default: Any,
    help: str,
    choices: tuple | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """A documented parameter of a config section or an extractor's `Params` dataclass.

    Every parameter declares what it allows: `choices` (a set), numeric bounds (`min`/`max`
    inclusive, `above`/`below` exclusive), or a `check` that raises ValueError with the reason.
    `_build` enforces them, so a nonsense value is a ConfigError before anything is written.
    """
    bounds = {"min": min, "max": max, "above": above, "below": below}
    return dataclasses.field(
        default=default,
        metadata={"help": help, "choices": choices, "bounds": {k: v for k, v in bounds.items() if v is not None}, "check": check},
    )


def check_file(path: str) -> None:
    """the path of an existing file"""
    if not Path(path).expanduser().is_file():
        raise ValueError("no such file")


def allowed(f: dataclasses.Field, hint: Any) -> str:
    """What a parameter accepts, in words: `an integer >= 1`, `one of: hann, hamming`, …"""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    choices = f.metadata.get("choices")
    if choices is not None:
        text = "one of: " + ", ".join("none" if c is None else str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
    elif base is bool:
        text = "true or false"
    else:
        text = {int: "an integer", float: "a number", str: "a string"}.get(base, "a list of strings")
        signs = {"min": ">=", "above": ">", "max": "<=", "below": "<"}
        limits = [f"{signs[k]} {v:g}" for k, v in f.metadata.get("bounds", {}).items()]
        if limits:
            text += " " + " and ".join(limits)
        if f.metadata.get("check") is not None and f.metadata.get("check").__doc__:
            text += f" ({f.metadata['check'].__doc__.strip()})"
    if optional and (choices is None or None not in choices):
        text += ", or none"
    return text


def _check_bounds(value: Any, f: dataclasses.Field, hint: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str, tuple)):
        return
    b = f.metadata.get("bounds", {})
    if (
        ("min" in b and value < b["min"])
        or ("max" in b and value > b["max"])
        or ("above" in b and value <= b["above"])
        or ("below" in b and value >= b["below"])
        or value != value  # NaN
    ):
        raise ConfigError(f"{where}={value!r} is out of range; allowed: {allowed(f, hint)}")


def shipped_configs() -> dict[str, Path]:
    """The configs that ship with the package, by name (`default`, `speech`, `music`)."""
    from importlib import resources

    directory = resources.files("audiokit.configs")
    return {Path(e.name).stem: Path(str(e)) for e in directory.iterdir() if e.name.endswith(".toml")}


def default_config_path() -> Path:
    return shipped_configs()["default"]


def resolve_config_path(path: str | Path | None) -> Path:
    """`-c`: a TOML file, or the name of a shipped config when no such file exists."""
    if path is None:
        return default_config_path()
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        shipped = shipped_configs()
        if str(path) in shipped:
            return shipped[str(path)]
        raise ConfigError(f"config not found: {path} is neither a file nor a shipped config ({', '.join(sorted(shipped))})")
    return path


@dataclass(frozen=True)
class InputConfig:
    extensions: tuple[str, ...] = param(
        DEFAULT_EXTENSIONS, "file extensions recognised as audio in directories (case-insensitive)"
    )


@dataclass(frozen=True)
class AudioConfig:
    channels: str = param("mix", "mix (average to mono), first, or each (one `channel` per input channel)", choices=CHANNEL_POLICIES)
    block_seconds: float = param(10.0, "seconds decoded at a time; memory does not grow with file length", above=0, max=3600)


@dataclass(frozen=True)
class RunConfig:
    file_timeout: float = param(600.0, "seconds allowed per hour of audio before a file is marked `timeout`", above=0)
    min_file_timeout: float = param(120.0, "the least time any file is allowed, seconds", above=0)
    # --backend torch: longer files are computed in their decode worker, not shipped whole to
    # the device process, so memory stays bounded whatever the length.
    max_device_file_s: float = param(600.0, "--backend torch: longer files are computed in their worker, seconds", above=0)


@dataclass(frozen=True)
class Config:
    chain: tuple[str, ...]
    params: dict[str, Any] = field(hash=False)  # extractor name -> frozen Params
    input: InputConfig = InputConfig()
    audio: AudioConfig = AudioConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict:
        return {
            "chain": list(self.chain),
            "input": dataclasses.asdict(self.input),
            "audio": dataclasses.asdict(self.audio),
            "run": dataclasses.asdict(self.run),
            **{name: dataclasses.asdict(self.params[name]) for name in self.chain},
        }

    def extractor_hash(self, name: str) -> str:
        """Fingerprint of what determines `name`'s rows: its params, version, channel policy."""
        from audiokit.extractors import REGISTRY

        cls = REGISTRY[name]
        payload = {
            "extractor": name,
            "version": cls.version,
            "params": dataclasses.asdict(self.params[name]),
            # `native_channels` extractors (loudness) measure the decoded channels whatever the
            # policy says: a constant (the default's value, so their fingerprints stay as they were).
            "channels": AudioConfig.channels if cls.native_channels else self.audio.channels,
        }
        if cls.consumes_rows:  # its rows change with those of the extractors it reads
            payload["reads"] = {
                other: self.extractor_hash(other)
                for other in self.chain
                if other != name and not REGISTRY[other].consumes_rows and cls.reads(REGISTRY[other])
            }
        return _digest(payload)

    @functools.cached_property
    def config_hash(self) -> str:
        """Fingerprint of the chain (every file's row carries it): computed once per config."""
        return _digest({name: self.extractor_hash(name) for name in self.chain})


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[str, str, Any]:
    """`mfcc.n_mfcc=40` → ("mfcc", "n_mfcc", 40). Values are TOML; bare words are strings."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"--set expects SECTION.PARAM=VALUE (e.g. mfcc.n_mfcc=40), got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


def load_config(
    path: str | Path | None = None,
    *,
    extractors: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
) -> Config:
    """Read `path` (default: configs/default.toml), pick `extractors`, apply `--set` overrides."""
    from audiokit.extractors import REGISTRY

    path = resolve_config_path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None

    overrides = list(overrides)
    for override in overrides:
        section, name, value = parse_override(override)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"--set {override}: {section!r} is not a section")
        raw[section][name] = value

    chain = raw.pop("chain", ["mfcc"])
    if extractors is not None:
        chain = extractors.split(",") if isinstance(extractors, str) else list(extractors)
    if isinstance(chain, str):
        chain = [chain]
    chain = [c.strip() for c in chain if c.strip()]
    if not chain:
        raise ConfigError(f"no extractor chosen; choose from: {', '.join(sorted(REGISTRY))}")
    valid = sorted(REGISTRY)
    for name in chain:
        if name not in REGISTRY:
            raise ConfigError(f"unknown extractor {name!r}; choose from: {', '.join(valid)}")
    if len(set(chain)) != len(chain):
        raise ConfigError(f"extractor listed twice in {chain}")

    for override in overrides:
        section = parse_override(override)[0]
        if section in REGISTRY and section not in chain:
            raise ConfigError(
                f"--set {override}: {section} is not in this run's chain ({', '.join(chain)}); add it with -x"
            )
    for section in raw:
        if section not in REGISTRY and section not in _SECTIONS:
            raise ConfigError(
                f"unknown section {section!r}; valid: {', '.join(list(_SECTIONS) + valid)}"
            )
    params = {name: _build(REGISTRY[name].Params, raw.get(name, {}), name) for name in REGISTRY if name in raw or name in chain}
    config = Config(
        chain=tuple(chain),
        params=params,
        input=_build(InputConfig, raw.get("input", {}), "input"),
        audio=_build(AudioConfig, raw.get("audio", {}), "audio"),
        run=_build(RunConfig, raw.get("run", {}), "run"),
    )
    for name in chain:
        try:
            REGISTRY[name](params[name]).validate()
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return config


def _build(cls: type, values: dict, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table of parameters")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown parameter {section}.{key}; valid: {', '.join(sorted(fields))}"
            )
        where = f"{section}.{key}"
        f = fields[key]
        value = _coerce(value, hints[key], where)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{where}={value!r} is not allowed; allowed: {allowed(f, hints[key])}")
        _check_bounds(value, f, hints[key], where)
        check = f.metadata.get("check")
        if check is not None and value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise ConfigError(f"{where}={value!r}: {exc}; allowed: {allowed(f, hints[key])}") from None
        kwargs[key] = value
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(str(v) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
    suffix = " or none" if optional else ""
    raise ConfigError(f"{where} must be {expected}{suffix}, got {value!r}")
