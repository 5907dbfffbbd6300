"""One decoder for every file: libsndfile (soundfile) first, FFmpeg (PyAV) for the rest.

`open_audio(path)` returns a reader with the native `info` and `blocks(n)` yielding
`(n, channels)` float32 arrays, so memory is one block whatever the file's length. Problems
become `DecodeError`s with an `error_kind` (empty, unsupported, decode) and a message that names
each backend's reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from audiokit.errors import DecodeError


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    format: str  # container/codec, e.g. "WAV/PCM_16" or "mov,mp4,m4a/aac"
    backend: str  # "soundfile" or "pyav"
    duration_hint_s: float | None = None  # what the header claims; the decoded length is the truth


# Integer PCM is read as integers and scaled here: libsndfile's own int→float conversion costs
# 5× the rest of reading a 16-bit WAV. Scaling by a power of two is exact, so the float32
# samples are bit for bit those of `sf.read(dtype="float32")` (what librosa.load gets).
_INTEGER_READS = {
    "PCM_S8": ("int16", 2.0**-15),
    "PCM_U8": ("int16", 2.0**-15),
    "PCM_16": ("int16", 2.0**-15),
    "PCM_24": ("int32", 2.0**-31),
    "PCM_32": ("int32", 2.0**-31),
}


class _SoundfileReader:
    def __init__(self, path: str):
        import soundfile as sf

        self._file = sf.SoundFile(path)
        self.info = AudioInfo(
            sample_rate=int(self._file.samplerate),
            channels=int(self._file.channels),
            format=f"{self._file.format}/{self._file.subtype}",
            backend="soundfile",
            duration_hint_s=self._file.frames / self._file.samplerate if self._file.samplerate else None,
        )

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        dtype, scale = _INTEGER_READS.get(self._file.subtype, ("float32", None))
        while True:
            data = self._file.read(block_frames, dtype=dtype, always_2d=True)
            if data.shape[0] == 0:
                return
            if scale is not None:
                data = np.multiply(data, np.float32(scale), dtype=np.float32)
            yield data

    def close(self) -> None:
        self._file.close()


class _PyAVReader:
    def __init__(self, path: str):
        import av

        self._container = av.open(path, metadata_errors="ignore")
        try:
            if not self._container.streams.audio:
                raise DecodeError("the file has no audio stream", kind="unsupported")
            self._stream = self._container.streams.audio[0]
            ctx = self._stream.codec_context
            rate = int(ctx.sample_rate or self._stream.rate or 0)
            channels = int(ctx.channels or 0)
            if rate <= 0 or channels <= 0:
                raise DecodeError("the audio stream declares no sample rate or channels", kind="unsupported")
            self._layout = ctx.layout
            container_name = self._container.format.name.split(",")[0]
            duration = self._container.duration / 1e6 if self._container.duration else None
            self.info = AudioInfo(rate, channels, f"{container_name}/{ctx.name}", "pyav", duration)
        except BaseException:
            self._container.close()
            raise

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        import av

        # Convert every decoded frame to planar float32 at the native rate and layout.
        resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self.info.sample_rate)
        pending: list[np.ndarray] = []
        pending_frames = 0
        bad_packets = 0
        last_error = ""
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                # Like the ffmpeg tool: skip a damaged packet and resynchronise on the next.
                bad_packets += 1
                last_error = _reason(exc)
                continue
            for packet_frame in decoded:
                for converted in resampler.resample(packet_frame):
                    chunk = converted.to_ndarray().T  # (n, channels)
                    pending.append(chunk)
                    pending_frames += chunk.shape[0]
            if pending_frames >= block_frames:
                yield from _split(np.concatenate(pending), block_frames, pending)
                pending_frames = sum(p.shape[0] for p in pending)
        for converted in resampler.resample(None):
            pending.append(converted.to_ndarray().T)
        data = np.concatenate(pending) if pending else np.zeros((0, self.info.channels), np.float32)
        if data.shape[0]:
            yield np.ascontiguousarray(data, dtype=np.float32)
        elif bad_packets:
            raise DecodeError(f"no packet could be decoded ({bad_packets} damaged): {last_error}")

    def close(self) -> None:
        self._container.close()


def _split(data: np.ndarray, block_frames: int, pending: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield whole blocks of `data`; leave the remainder as the only item in `pending`."""
    whole = (data.shape[0] // block_frames) * block_frames
    for start in range(0, whole, block_frames):
        yield np.ascontiguousarray(data[start : start + block_frames], dtype=np.float32)
    pending.clear()
    if whole < data.shape[0]:
        pending.append(data[whole:])


class AudioReader:
    """A decoded view of one file; use as a context manager."""

    def __init__(self, backend):
        self._backend = backend
        self.info: AudioInfo = backend.info
        self.frames_read = 0

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """`(n, channels)` float32 blocks of at most `block_frames` frames (the last may be shorter)."""
        try:
            for block in self._backend.blocks(block_frames):
                self.frames_read += block.shape[0]
                yield block
        except DecodeError as exc:
            exc.backend = self.info.backend
            raise
        except Exception as exc:
            at = self.frames_read / self.info.sample_rate
            message = f"decoding failed after {at:.2f} s of audio: {_reason(exc)}"
            raise DecodeError(message, backend=self.info.backend) from None

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BACKENDS = {"soundfile": ("libsndfile", _SoundfileReader), "pyav": ("ffmpeg", _PyAVReader)}


def open_audio(path: str, backends: tuple[str, ...] = ("soundfile", "pyav")) -> AudioReader:
    """Open `path` with the first of `backends` that recognises it."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise DecodeError(f"cannot read the file: {exc.strerror or exc}", kind="unreadable") from None
    if size == 0:
        raise DecodeError("the file is empty (0 bytes)", kind="empty")
    reasons = []
    for name, backend in (BACKENDS[b] for b in backends):
        try:
            return AudioReader(backend(path))
        except DecodeError as exc:
            reasons.append(f"{name}: {exc}")
        except Exception as exc:
            reasons.append(f"{name}: {_reason(exc)}")
    raise DecodeError("not a readable audio file (" + "; ".join(reasons) + ")", kind="unsupported")


_PLAIN_REASONS = {
    # libsndfile's words for "I do not know this format" are misleading for a regular file.
    "File does not exist or is not a regular file": "format not recognised",
    "Format not recognised": "format not recognised",
}


def _reason(exc: BaseException) -> str:
    """A short, path-free reason: the row already names the file."""
    text = str(exc).strip() or type(exc).__name__
    if "Error opening" in text and ": " in text:
        text = text.split(": ", 1)[1]
    for needle, plain in _PLAIN_REASONS.items():
        if needle in text:
            return plain
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)  # PyAV/FFmpeg error numbers
    text = re.sub(r":\s*'[^']*'", "", text)  # ... and the path it names
    return " ".join(text.split())[:300]
