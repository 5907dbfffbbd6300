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


# On a damaged MPEG stream, libsndfile's samples depend on where each read ends (mpg123 leaves
# a failed granule's output to whatever the read buffer held), so MP3 is always read in the
# same granule-aligned steps and re-cut into blocks: every block size gives the same samples.
_MPEG_READ_FRAMES = 1152 * 128


def _rechunk(pieces: Iterator[np.ndarray], block_frames: int, channels: int) -> Iterator[np.ndarray]:
    """`(n, channels)` pieces of any length → blocks of exactly `block_frames` (the last shorter)."""
    assembler = _BlockAssembler(block_frames, channels)
    for piece in pieces:
        yield from assembler.add([piece[:, c] for c in range(channels)])
    if assembler.filled:
        yield assembler.rest()


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
        if self._file.subtype.startswith("MPEG_LAYER"):
            yield from _rechunk(self._reads(_MPEG_READ_FRAMES), block_frames, self.info.channels)
        else:
            yield from self._reads(block_frames)

    def _reads(self, read_frames: int) -> Iterator[np.ndarray]:
        dtype, scale = _INTEGER_READS.get(self._file.subtype, ("float32", None))
        while True:
            data = self._file.read(read_frames, dtype=dtype, always_2d=True)
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

        channels, rate = self.info.channels, self.info.sample_rate
        assembler = _BlockAssembler(block_frames, channels)
        # Frames that are not planar float32 at the stream's rate and layout (integer codecs,
        # a layout change) are converted; once one is, every later frame goes the same way,
        # so that samples the converter holds back keep their order.
        resampler = None
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
            for frame in decoded:
                if resampler is None and not (
                    frame.format.name == "fltp" and frame.sample_rate == rate and len(frame.layout.channels) == channels
                ):
                    resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=rate)
                for converted in (frame,) if resampler is None else resampler.resample(frame):
                    yield from assembler.add(_planes(converted))
        for converted in resampler.resample(None) if resampler is not None else ():
            yield from assembler.add(_planes(converted))
        if assembler.filled:
            yield assembler.rest()
        elif assembler.total == 0 and bad_packets:
            raise DecodeError(f"no packet could be decoded ({bad_packets} damaged): {last_error}")

    def close(self) -> None:
        self._container.close()


def _planes(frame) -> list[np.ndarray]:
    """A planar float32 FFmpeg frame as one array per channel, without copying."""
    return [np.frombuffer(plane, dtype=np.float32, count=frame.samples) for plane in frame.planes]


class _BlockAssembler:
    """Copies per-channel pieces (FFmpeg's planar frames of ~1024 samples, or the columns of a
    read) straight into `(block_frames, channels)` blocks: one copy per sample."""

    def __init__(self, block_frames: int, channels: int):
        self.block = np.empty((block_frames, channels), dtype=np.float32)
        self.filled = 0
        self.total = 0

    def add(self, planes: list[np.ndarray]) -> Iterator[np.ndarray]:
        n = planes[0].shape[0]
        start = 0
        while start < n:
            take = min(n - start, self.block.shape[0] - self.filled)
            for channel, plane in enumerate(planes):
                self.block[self.filled : self.filled + take, channel] = plane[start : start + take]
            self.filled += take
            self.total += take
            start += take
            if self.filled == self.block.shape[0]:
                yield self.block
                self.block = np.empty_like(self.block)
                self.filled = 0

    def rest(self) -> np.ndarray:
        return self.block[: self.filled]


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
