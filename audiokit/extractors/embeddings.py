"""`embeddings`: learned vectors per fixed window (or per file) from a pretrained model.

Windows are fixed and deterministic: window `k` starts at `k * hop_s` and lasts `window_s`;
the last one is zero-padded to full length and its row records its true end (the file's end).
Windows stream through a bounded buffer and go to the model `batch_size` at a time, so memory
does not grow with the file's length. The model (torch; onnxruntime for ONNX user models) is
loaded on the first file a worker sees, not when the extractor is built, so the main process
that only reads `schema()` never loads it.

Two paths share `Windower` (cutting) and `EmbeddingRows` (rows, pooling): `EmbeddingStream`
runs the model per file in a worker (`--backend numpy`); with `--backend torch` the workers
only cut windows and the device process runs `embed_across_files` on windows of many files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from audiokit.config import check_file
from audiokit.errors import ConfigError, ExtractorError
from audiokit.extractors.base import (
    Extractor,
    TooLongForDevice,
    key_columns,
    param,
    register,
    span_columns,
    vector_array,
    vector_type,
)
from audiokit.store.arrays import numeric, repeated


def check_model(model: str) -> None:
    """a name from `audiokit models list`, or a model card PATH.toml"""
    from audiokit.models.registry import BUILTIN

    if model not in BUILTIN and not (model.endswith(".toml") and Path(model).expanduser().is_file()):
        raise ValueError("unknown model")


@dataclass(frozen=True)
class EmbeddingParams:
    model: str = param("ge2e", "model name from `audiokit models list`, or a user model card PATH.toml", check=check_model)
    window_s: float | None = param(None, "window length, seconds; none = the model's default", above=0, max=3600)
    hop_s: float | None = param(None, "seconds between window starts; none = the model's default", above=0, max=3600)
    pooling: str = param(
        "none", "none = one row per window; mean/max = one row per file and channel", choices=("none", "mean", "max")
    )
    batch_size: int = param(16, "windows per forward pass", min=1, max=65536)
    device: str = param("auto", "auto (cuda when available), cpu or cuda", choices=("auto", "cpu", "cuda"))
    dtype: str = param("float32", "float32, or float16 (CUDA only)", choices=("float32", "float16"))
    weights: str | None = param(None, "checkpoint path instead of the model's own weights", check=check_file)


@register
class Embeddings(Extractor):
    name = "embeddings"
    table = "embeddings"
    description = "pretrained-model embeddings per fixed window or per file (ge2e, cnn14, ONNX/TorchScript cards)"
    Params = EmbeddingParams

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self._recipe = None
        self._model = None

    @property
    def recipe(self):
        if self._recipe is None:
            from audiokit.models.registry import ModelError, get_recipe

            try:
                self._recipe = get_recipe(self.params.model)
            except ModelError as exc:
                raise ConfigError(f"embeddings: {exc}") from None
        return self._recipe

    @property
    def sample_rate(self) -> int:
        return self.recipe.sample_rate

    @property
    def unit_hop(self) -> int:
        return self.recipe.unit_hop

    @property
    def window_units(self) -> int:
        seconds = self.params.window_s if self.params.window_s is not None else self.recipe.window_s
        return max(1, round(seconds * self.sample_rate / self.unit_hop))

    @property
    def hop_units(self) -> int:
        seconds = self.params.hop_s if self.params.hop_s is not None else self.recipe.hop_s
        return max(1, round(seconds * self.sample_rate / self.unit_hop))

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + span_columns()
            + [
                pa.field("model", pa.string(), nullable=False),
                pa.field("embedding", vector_type(self.recipe.dim)),
            ]
        )

    def validate(self) -> None:
        from audiokit.models.registry import ModelError

        p = self.params
        recipe = self.recipe
        try:
            recipe.check(p.weights)
        except ModelError as exc:
            raise ConfigError(f"embeddings: {exc}") from None
        window_s = p.window_s if p.window_s is not None else recipe.window_s
        hop_s = p.hop_s if p.hop_s is not None else recipe.hop_s
        if not window_s >= recipe.min_window_s or window_s > 3600:
            raise ValueError(f"window_s={window_s} is outside [{recipe.min_window_s}, 3600] for model {recipe.name}")
        if not 0 < hop_s <= 3600:
            raise ValueError(f"hop_s={hop_s} must be positive (and at most 3600)")
        if p.batch_size < 1:
            raise ValueError(f"batch_size={p.batch_size} must be at least 1")
        if p.dtype == "float16" and p.device != "cuda":
            raise ValueError("dtype=float16 needs device=cuda (CPU inference is float32)")

    def seconds_per_audio_hour(self) -> float:
        # Four times the measured CPU cost of the windows of one hour (two cores shared by
        # other work included), so a long file on CPU is not cut off by the default limit.
        window_s = self.window_units * self.unit_hop / self.sample_rate
        hop_s = self.hop_units * self.unit_hop / self.sample_rate
        return 4.0 * (3600.0 / hop_s) * window_s * self.recipe.cpu_s_per_window_s

    def loaded(self):
        """The model, loaded on first use in this process and kept for every later file."""
        if self._model is None:
            from audiokit.dsp.torch_ops import resolve_device

            try:
                device = resolve_device(self.params.device)
                self._model = self.recipe.load(weights=self.params.weights, device=device, dtype=self.params.dtype)
            except Exception as exc:  # a corrupt checkpoint, a CUDA failure: this file's error row
                raise ExtractorError(f"embeddings: cannot load model {self.recipe.name}: {type(exc).__name__}: {exc}") from None
        return self._model

    def start(self, channels: int, sample_rate: int) -> EmbeddingStream:
        return EmbeddingStream(self, channels)

    def device_stage(self) -> EmbeddingDeviceStage | None:
        """With `backend="torch"`, workers cut the windows (front end included) and the process
        owning the device runs the model on windows packed across files."""
        return EmbeddingDeviceStage(self) if self.backend == "torch" else None


class Window(NamedTuple):
    channel: int
    start_s: float
    end_s: float
    units: np.ndarray  # (window, *unit_shape) float32: what the model's `run` takes per window


class Windower:
    """One file's fixed windows: front end → window buffer → `Window`s in window order.

    Holds at most one window plus one block of units, whatever the file's length. Needs the
    recipe's front end only, not the model, so decode workers can cut windows for a model that
    runs in another process (`--backend torch`).
    """

    def __init__(self, extractor: Embeddings, channels: int):
        self.channels = channels
        self.frontend = extractor.recipe.stream_frontend()
        self.window = extractor.window_units
        self.hop = extractor.hop_units
        self.unit_hop = extractor.unit_hop
        self.sample_rate = extractor.sample_rate
        self.buffer: np.ndarray | None = None  # units from `buffer_start` on, (C, U, ...)
        self.buffer_start = 0
        self.next_window = 0
        self.samples = 0
        # A stream front end's frame t covers samples up to (t+1)*unit_hop only once frame t+1
        # exists: wait for it, so a window cut before the end never reaches past the file.
        self.lookahead = 1 if self.frontend else 0

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    def push(self, block: np.ndarray) -> list[Window]:
        self.samples += block.shape[1]
        units = self.frontend.push(block) if self.frontend else block
        return self._cut(units, final=False)

    def finish(self) -> list[Window]:
        units = self.frontend.finish(self.channels) if self.frontend else None
        return self._cut(units, final=True)

    def _cut(self, units: np.ndarray | None, final: bool) -> list[Window]:
        if units is not None and units.shape[1]:
            units = np.asarray(units, dtype=np.float32)
            self.buffer = units if self.buffer is None else np.concatenate([self.buffer, units], axis=1)
        held = 0 if self.buffer is None else self.buffer.shape[1]
        total = self.buffer_start + held  # units seen so far
        last = None
        if final:
            # Windows needed to cover every sample; at least one, even for a file shorter than it.
            # Counted in samples, not units: a stream front end has one frame more than the
            # samples fill (the frame centred on the last sample).
            win, hop = self.window * self.unit_hop, self.hop * self.unit_hop
            last = 1 + max(0, math.ceil((self.samples - win) / hop))
        windows = []
        while True:
            k = self.next_window
            first = k * self.hop
            if last is not None:
                if k >= last:
                    break
            elif first + self.window + self.lookahead > total:
                break
            lo = first - self.buffer_start
            piece = self.buffer[:, lo : lo + self.window] if self.buffer is not None else None
            if piece is None or piece.shape[1] < self.window:
                shape = (self.channels, self.window) + (() if self.buffer is None else self.buffer.shape[2:])
                padded = np.zeros(shape, dtype=np.float32)
                if piece is not None and piece.shape[1]:
                    padded[:, : piece.shape[1]] = piece
                piece = padded
            # From integer sample counts, so times are exact where the rate allows (0.8, not 0.8000…01).
            start = first * self.unit_hop / self.sample_rate
            end = (first + self.window) * self.unit_hop / self.sample_rate
            if final:
                end = min(end, self.duration_s)
            for channel in range(self.channels):
                windows.append(Window(channel, start, end, piece[channel].copy()))
            self.next_window += 1
        # Drop what no later window needs.
        keep_from = self.next_window * self.hop
        if self.buffer is not None and keep_from > self.buffer_start:
            drop = min(keep_from - self.buffer_start, self.buffer.shape[1])
            self.buffer = self.buffer[:, drop:].copy()
            self.buffer_start += drop
        return windows


class EmbeddingRows:
    """One file's rows from its windows' vectors: a row per window, or (pooling) one per channel
    at the end. Vectors must come in window order, so pooled sums add up in the same order
    whichever path computed them."""

    def __init__(self, extractor: Embeddings, channels: int):
        self.ext = extractor
        self.channels = channels
        self.pooling = extractor.params.pooling
        self.pooled: list[np.ndarray | None] = [None] * channels
        self.pooled_count = np.zeros(channels, dtype=np.int64)

    def add(self, windows: list[Window], vectors: np.ndarray) -> list[pa.RecordBatch]:
        dim = self.ext.recipe.dim
        if vectors.shape != (len(windows), dim):
            raise ValueError(f"model {self.ext.recipe.name} returned shape {vectors.shape}, expected (B, {dim})")
        channels = np.array([w.channel for w in windows], dtype=np.int32)
        if self.pooling != "none":
            for c, v in zip(channels, vectors.astype(np.float64)):
                old = self.pooled[c]
                self.pooled[c] = v if old is None else (old + v if self.pooling == "mean" else np.maximum(old, v))
                self.pooled_count[c] += 1
            return []
        start = np.array([w.start_s for w in windows])
        end = np.array([w.end_s for w in windows])
        return [self._rows(channels, start, end, vectors)] if windows else []

    def finish(self, duration_s: float) -> list[pa.RecordBatch]:
        if self.pooling == "none" or not self.pooled_count.all():
            return []
        stacked = np.stack(self.pooled)
        if self.pooling == "mean":
            stacked = stacked / self.pooled_count[:, None]
        zeros = np.zeros(self.channels)
        return [self._rows(np.arange(self.channels), zeros, zeros + duration_s, stacked.astype(np.float32))]

    def _rows(self, channels, start, end, vectors) -> pa.RecordBatch:
        fields = [f for f in self.ext.schema() if f.name != "file_id"]
        arrays = [
            numeric(np.asarray(channels, dtype=np.int32)),
            numeric(np.asarray(start, dtype=np.float64)),
            numeric(np.asarray(end, dtype=np.float64)),
            repeated(self.ext.recipe.name, len(vectors)),
            vector_array(np.asarray(vectors, dtype=np.float32)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


class EmbeddingStream:
    """One file, in this process: windows go to the model `batch_size` at a time.

    Fewer than `batch_size` windows wait, whatever the file's length. Batches fill in window
    order whatever the block sizes, so the same file gives the same batches and, on CPU,
    bit-identical vectors.
    """

    def __init__(self, extractor: Embeddings, channels: int):
        self.model = extractor.loaded()
        self.windower = Windower(extractor, channels)
        self.rows = EmbeddingRows(extractor, channels)
        self.batch_size = extractor.params.batch_size
        self.pending: list[Window] = []

    def push(self, block: np.ndarray) -> list[pa.RecordBatch]:
        return self._run(self.windower.push(block), final=False)

    def finish(self) -> list[pa.RecordBatch]:
        batches = self._run(self.windower.finish(), final=True)
        return batches + self.rows.finish(self.windower.duration_s)

    def _run(self, windows: list[Window], final: bool) -> list[pa.RecordBatch]:
        self.pending += windows
        batches = []
        size = self.batch_size
        while len(self.pending) >= size or (final and self.pending):
            chunk, self.pending = self.pending[:size], self.pending[size:]
            vectors = self.model.embed(np.stack([w.units for w in chunk]))
            batches += self.rows.add(chunk, vectors)
        return batches


def embed_across_files(extractor: Embeddings, files: list[list[Window]]) -> list[np.ndarray]:
    """Vectors of every file's windows, computed in batches packed across files.

    Every batch is exactly `batch_size` windows (the last one padded with zero windows): a
    network's kernels can depend on the batch size, so a window's vector then never depends
    on which other files shared its batch, and runs stay bit-identical on CPU.
    """
    model = extractor.loaded()
    size = extractor.params.batch_size
    units = [w.units for windows in files for w in windows]
    vectors = []
    for lo in range(0, len(units), size):
        chunk = units[lo : lo + size]
        batch = np.stack(chunk + [np.zeros_like(chunk[0])] * (size - len(chunk)))
        vectors.append(model.embed(batch)[: len(chunk)])
    flat = np.concatenate(vectors) if vectors else np.zeros((0, extractor.recipe.dim), dtype=np.float32)
    bounds = np.cumsum([0] + [len(windows) for windows in files])
    return [flat[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


WINDOW_BYTES_PER_FLUSH = 64 << 20  # windows gathered before the model runs on them


class FileWindows(NamedTuple):
    """One file's embedding windows, cut by a worker, for the device process's model."""

    channels: int
    duration_s: float
    windows: list[Window]


class _WindowCollector:
    """A stream that cuts a file's windows and keeps them, up to `max_bytes`; no rows."""

    def __init__(self, extractor: Embeddings, channels: int, max_bytes: int):
        self.windower = Windower(extractor, channels)
        self.channels = channels
        self.windows: list[Window] = []
        self.nbytes = 0
        self.max_bytes = max_bytes

    def push(self, block: np.ndarray) -> list:
        self._keep(self.windower.push(block))
        return []

    def finish(self) -> list:
        self._keep(self.windower.finish())
        return []

    def _keep(self, windows: list[Window]) -> None:
        self.windows += windows
        self.nbytes += sum(w.units.nbytes for w in windows)
        if self.nbytes > self.max_bytes:
            self.windows = []
            raise TooLongForDevice()

    def held(self) -> FileWindows:
        return FileWindows(self.channels, self.windower.duration_s, self.windows)


class EmbeddingDeviceStage:
    """The embeddings extractor's device stage: every forward pass a full batch of windows
    packed across files (`embed_across_files`)."""

    def __init__(self, extractor: Embeddings):
        self.extractor = extractor

    def key(self, sample_rate: int) -> tuple:
        return ("windows", self.extractor.name)

    def collector(self, channels: int, sample_rate: int, max_seconds: float) -> _WindowCollector:
        # Up to twice the bytes of the samples of `max_seconds` (overlapping windows).
        return _WindowCollector(self.extractor, channels, 2 * 4 * channels * int(max_seconds * sample_rate))

    def load(self, held: FileWindows) -> float:
        """A file's share of a flush: a flush holds at least four model batches of windows,
        or `WINDOW_BYTES_PER_FLUSH`."""
        if not held.windows:
            return 0.0
        per_window = held.windows[0].units.nbytes
        batch_size = self.extractor.params.batch_size
        return len(held.windows) * per_window / max(WINDOW_BYTES_PER_FLUSH, 4 * batch_size * per_window)

    def compute(self, helds: list[FileWindows]) -> list:
        vectors = embed_across_files(self.extractor, [held.windows for held in helds])
        return list(zip(helds, vectors))

    def rows(self, payload) -> list[pa.RecordBatch]:
        held, vectors = payload
        builder = EmbeddingRows(self.extractor, held.channels)
        return builder.add(held.windows, vectors) + builder.finish(held.duration_s)
