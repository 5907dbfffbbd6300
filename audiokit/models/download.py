"""Fetching model checkpoints: resumable, checked against a pinned sha256, renamed into place.

A download goes to `NAME.part` next to its destination. An interrupted transfer leaves the
part file, and the next call asks the server for the remaining bytes (HTTP Range); a server
that ignores the range makes us start again from zero. Only a file whose size and sha256 match
the pins is renamed to its final name, so the cache never holds a wrong or half-written
checkpoint under a name that code would load.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

CHUNK_BYTES = 1 << 20


class DownloadError(Exception):
    """The transfer failed or the bytes are not the pinned ones."""


def model_dir() -> Path:
    """Where pulled checkpoints live: `$AUDIOKIT_MODEL_DIR`, else `~/.cache/audiokit/models`."""
    configured = os.environ.get("AUDIOKIT_MODEL_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "audiokit" / "models"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str,
    size: int | None = None,
    timeout: float = 60.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download `url` to `dest` unless a verified copy is already there; returns `dest`.

    Raises DownloadError on a network failure (the part file stays, for resuming) and on a
    checksum or size mismatch (the part file is deleted: resuming it cannot help).
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0

    request = urllib.request.Request(url, headers={"User-Agent": "audiokit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    complete = False  # the server sent every byte it announced
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if have and status != 206:
                have = 0  # the server ignored the range and sends the whole file: start over
            length = response.headers.get("Content-Length")
            announced = have + int(length) if length is not None else None
            total = size or announced
            with open(part, "ab" if have else "wb") as out:
                done = have
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            complete = announced is None or done == announced
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and size is not None and have == size:
            complete = True  # we already hold every byte; verify below
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"{url}: {reason} ({kept} bytes kept in {part}; run again to resume)") from None

    got = part.stat().st_size
    if not complete:
        raise DownloadError(f"{url}: transfer ended after {got} bytes ({got} bytes kept in {part}; run again to resume)")
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {size}: not the pinned file; it was deleted")
    digest = sha256_of(part)
    if digest != sha256.lower():
        part.unlink()
        raise DownloadError(f"{url}: sha256 {digest} does not match the pinned {sha256}; the file was deleted")
    os.replace(part, dest)
    return dest


__all__ = ["DownloadError", "fetch", "model_dir", "sha256_of"]
