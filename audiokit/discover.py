"""Inputs (directories, files, globs, lists of paths) → the audio files to process.

The walk never stops on one bad entry: unreadable directories are skipped, symlink loops are
cut by remembering the directories already visited, and names that are not valid UTF-8 are
kept (with surrogate escapes) and shown with backslash escapes.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class AudioFile:
    path: str  # absolute, as the OS gives it (may hold surrogate escapes)
    relpath: str  # relative to the input it was found under, '/'-separated
    size_bytes: int
    mtime_ns: int
    file_id: str

    @property
    def display_path(self) -> str:
        return printable(self.path)

    @property
    def display_relpath(self) -> str:
        return printable(self.relpath)


def printable(name: str) -> str:
    """A name as valid UTF-8 text: undecodable bytes become `\\xNN`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def make_file_id(relpath: str) -> str:
    return hashlib.sha1(os.fsencode(relpath)).hexdigest()[:16]


def read_path_list(source: TextIO) -> list[str]:
    """Paths from `--files-from`: one per line, blank lines and `#` comments ignored."""
    return [line.rstrip("\r\n") for line in source if line.strip() and not line.startswith("#")]


def discover(
    inputs: Iterable[str],
    *,
    extensions: Iterable[str],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    on_warning=None,
) -> list[AudioFile]:
    """Every audio file under `inputs`, in a stable order, each once.

    A directory is walked recursively and `relpath` is relative to it; a file (named directly,
    by a glob or in a list) has its name as `relpath`. Files explicitly named are taken whatever
    their extension; in directories only the listed `extensions` count. `include`/`exclude`
    globs are matched against `relpath` and the file name.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    warn = on_warning or (lambda message: None)
    found: dict[str, AudioFile] = {}
    used_ids: set[str] = set()

    def add(path: str, relpath: str, st: os.stat_result) -> None:
        if not _selected(relpath, include, exclude):
            return
        real = os.path.realpath(path)
        if real in found:
            return
        file_id = make_file_id(relpath)
        if file_id in used_ids:
            # Same relpath under two inputs: keep both, the later keyed by its absolute path.
            warn(f"{printable(relpath)} found under two inputs; the copy at {printable(path)} gets its own id")
            file_id = make_file_id(path)
        used_ids.add(file_id)
        found[real] = AudioFile(os.path.abspath(path), relpath, st.st_size, st.st_mtime_ns, file_id)

    for item in inputs:
        matches = [item]
        if not os.path.lexists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                warn(f"no file matches {item!r}")
        for path in matches:
            try:
                st = os.stat(path)
            except OSError as exc:
                warn(f"cannot read {printable(path)}: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(st.st_mode):
                for file_path, relpath, file_st in _walk(path, exts, warn):
                    add(file_path, relpath, file_st)
            elif stat.S_ISREG(st.st_mode):
                add(path, os.path.basename(path), st)
    return list(found.values())


def _selected(relpath: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    name = relpath.rsplit("/", 1)[-1]

    def match(pattern: str) -> bool:
        return fnmatch.fnmatchcase(relpath, pattern) or fnmatch.fnmatchcase(name, pattern)

    include = list(include)
    if include and not any(match(p) for p in include):
        return False
    return not any(match(p) for p in exclude)


def _walk(root: str, exts: set[str], warn) -> Iterator[tuple[str, str, os.stat_result]]:
    visited: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            if key in visited:
                continue  # a symlink loop or a second link to a directory already walked
            visited.add(key)
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            warn(f"skipping unreadable directory {printable(directory)}: {exc.strerror or exc}")
            continue
        subdirs = []
        for entry in entries:
            relpath = prefix + entry.name
            try:
                if entry.is_dir():
                    subdirs.append((entry.path, relpath + "/"))
                    continue
                if not entry.is_file():
                    continue
                ext = entry.name.rsplit(".", 1)[-1].lower() if "." in entry.name else ""
                if ext not in exts:
                    continue
                yield entry.path, relpath, entry.stat()
            except OSError as exc:
                warn(f"skipping {printable(entry.path)}: {exc.strerror or exc}")
        stack.extend(reversed(subdirs))




__all__ = ["AudioFile", "discover", "make_file_id", "printable", "read_path_list"]
