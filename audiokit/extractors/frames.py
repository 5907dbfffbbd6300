"""Shared streaming machinery for frame-feature extractors (mfcc, logmel, spectral)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import ClassVar, Protocol

import numpy as np
import pyarrow as pa

from audiokit.dsp import StreamFramer
from audiokit.extractors.base import Extractor, key_columns, vector_array
from audiokit.store.arrays import numeric

BATCH_FRAMES = 4096  # frames per staged batch (a 5-second clip: one batch, not one per block)


class FrameExtractor(Extractor):
    """An extractor whose rows are analysis frames: `frame`, `time_s`, then feature columns.

    Subclasses set `frame_length`/`hop_length`, list their columns in `feature_fields()` and
    compute them in `compute(segments)`, where `segments[i]` is the next stretch of signal padded
    with `pad_modes[i]` (all framers share frame and hop length, so their frame counts agree).
    If `peak_floor_db` is set, `compute` returns unfloored dB values under `"_db"` and
    `finalize(db)` turns them into columns once the file's peak is known (librosa's `top_db`).

    With `backend="torch"` the same steps run through `torch_module()` (the torch twin, built
    from this extractor's numpy window and matrices) on `device`; `compute_frames` and
    `finalize_frames` pick the backend, and `device_stage()` packs many files into one call of
    the same module (`audiokit.extractors.batched`).
    """

    pad_modes: ClassVar[tuple[str, ...]] = ("constant",)
    preload = ("scipy.fft",)  # 0.14 s to import (numpy's lazy submodules, via its array API layer)
    frame_length: int
    hop_length: int
    center: bool = True
    peak_floor_db: float | None = None

    def feature_fields(self) -> list[pa.Field]:
        raise NotImplementedError

    def compute(self, segments: list[np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def finalize(self, db: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def torch_module(self):
        """The torch twin of `compute`/`finalize` (an `nn.Module` on `torch_device`), built once."""
        module = self.__dict__.get("_torch_module")
        if module is None:
            from audiokit.dsp.torch_ops import resolve_device

            self.torch_device = resolve_device(self.device)
            module = self._build_torch_module().to(self.torch_device)
            self._torch_module = module
        return module

    def _build_torch_module(self):
        raise NotImplementedError(f"{self.name} has no torch backend")

    def has_torch_twin(self) -> bool:
        return type(self)._build_torch_module is not FrameExtractor._build_torch_module

    def device_stage(self):
        """With `backend="torch"`, frame features are computed in device batches packed across
        files (`audiokit.extractors.batched`); workers only collect the resampled signal."""
        if self.backend != "torch" or not self.has_torch_twin():
            return None
        from audiokit.extractors.batched import FrameDeviceStage

        return FrameDeviceStage(self)

    def compute_frames(self, segments: list[np.ndarray]) -> dict[str, np.ndarray]:
        """`compute`, on the backend this extractor was built for (one file's next frames)."""
        if self.backend != "torch":
            return self.compute(segments)
        import torch

        from audiokit.dsp import torch_ops

        module = self.torch_module()
        with torch.inference_mode():
            frame_sets = [
                torch_ops.frame(
                    torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)).to(self.torch_device),
                    self.frame_length,
                    self.hop_length,
                )
                for s in segments
            ]
            columns = self.torch_columns(module, frame_sets)
            return {name: values.cpu().numpy() for name, values in columns.items()}

    def torch_columns(self, module, frame_sets: list) -> dict:
        """What `compute` returns, from the torch module: feature columns, or `{"_db": …}`
        awaiting the file's peak floor."""
        db = module(frame_sets[0])
        return {"_db": db} if self.peak_floor_db is not None else module.finalize(db)

    def finalize_frames(self, db: np.ndarray) -> dict[str, np.ndarray]:
        if self.backend != "torch":
            return self.finalize(db)
        import torch

        module = self.torch_module()
        with torch.inference_mode():
            columns = module.finalize(torch.from_numpy(np.ascontiguousarray(db)).to(self.torch_device))
            return {name: values.cpu().numpy() for name, values in columns.items()}

    def row_stage(self, channels: int) -> RowStage | None:
        """A per-file stage that derives more columns from finished frames (mfcc's deltas), or
        None. It may hold frames back; the stream numbers rows by what it lets through."""
        return None

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [pa.field("frame", pa.int64(), nullable=False), pa.field("time_s", pa.float64(), nullable=False)]
            + self.feature_fields()
        )

    def start(self, channels: int, sample_rate: int) -> FrameStream:
        return FrameStream(self, channels, sample_rate)


class RowStage(Protocol):
    def push(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def finish(self) -> dict[str, np.ndarray]: ...


class _PeakFloorSpool:
    """Holds float32 arrays (unfloored dB frames, spectra) until the file ends, tracking their
    peak; spills to disk past 16 MiB."""

    def __init__(self):
        self._file = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        self._shapes: list[tuple[int, ...]] = []
        self.peak = -np.inf

    def add(self, db: np.ndarray) -> None:
        if db.size:
            self.peak = max(self.peak, float(db.max()))
        self._shapes.append(db.shape)
        self._file.write(np.ascontiguousarray(db, dtype=np.float32).tobytes())

    def chunks(self, top_db: float) -> Iterable[np.ndarray]:
        floor = np.float32(self.peak - top_db)
        for data in self.arrays():
            yield np.maximum(data, floor)

    def arrays(self, close: bool = True) -> Iterable[np.ndarray]:
        """The arrays added, in order, as they were; then the spool is closed (unless `close`
        is false: another pass may follow)."""
        self._file.seek(0)
        for shape in self._shapes:
            count = int(np.prod(shape))
            yield np.frombuffer(self._file.read(count * 4), dtype=np.float32).reshape(shape)
        if close:
            self._file.close()

    def close(self) -> None:
        self._file.close()


class FrameStream:
    def __init__(self, extractor: FrameExtractor, channels: int, sample_rate: int):
        self.extractor = extractor
        self.channels = channels
        self.sample_rate = sample_rate
        self.framers = [
            StreamFramer(extractor.frame_length, extractor.hop_length, center=extractor.center, pad_mode=mode)
            for mode in extractor.pad_modes
        ]
        self.spool = _PeakFloorSpool() if extractor.peak_floor_db is not None else None
        self.stage = extractor.row_stage(channels)
        self.rows_out = 0  # frames handed to `_out` so far: the next row's `frame`
        self.fields = [f for f in extractor.schema() if f.name != "file_id"]
        self.schema = pa.schema(self.fields)
        self._held: list[dict[str, np.ndarray]] = []  # rows not yet made into a batch
        self._held_frames = 0

    def push(self, block: np.ndarray) -> list[pa.RecordBatch]:
        return self._emit([f.push(block) for f in self.framers])

    def finish(self) -> Iterator[pa.RecordBatch]:
        """The last rows; with a peak floor, every row of the file, one block at a time."""
        yield from self._emit([f.finish() for f in self.framers])
        if self.spool is not None:
            for db in self.spool.chunks(self.extractor.peak_floor_db):
                yield from self._out(self.extractor.finalize_frames(db))
        if self.stage is not None:
            yield from self._out(self.stage.finish(), staged=True)
        yield from self._rest()

    def rows_of(self, columns: dict[str, np.ndarray]) -> list[pa.RecordBatch]:
        """A whole file's rows from its computed columns (`(channels, frames, ...)` arrays, as a
        device stage gives them), built as the stream builds its own."""
        if self.stage is None:
            return [self._batch(0, columns)]
        # Columns derived from whole rows (mfcc's deltas): the stage the numpy stream runs.
        return self._out(columns) + self._out(self.stage.finish(), staged=True) + self._rest()

    def _emit(self, segments: list[np.ndarray]) -> list[pa.RecordBatch]:
        ext = self.extractor
        if segments[0].size == 0 or segments[0].shape[-1] < ext.frame_length:
            return []
        columns = ext.compute_frames(segments)
        if self.spool is not None:
            self.spool.add(columns["_db"])
            return []
        return self._out(columns)

    def _out(self, columns: dict[str, np.ndarray], staged: bool = False) -> list[pa.RecordBatch]:
        """Rows in batches of at least `BATCH_FRAMES` frames (a short file's in one): each
        batch costs its staging and commit a fixed price, whatever its size."""
        if self.stage is not None and not staged:
            columns = self.stage.push(columns)
        count = next(iter(columns.values())).shape[1] if columns else 0
        if count == 0:
            return []
        self.rows_out += count
        self._held.append(columns)
        self._held_frames += count
        return self._rest() if self._held_frames >= BATCH_FRAMES else []

    def _rest(self) -> list[pa.RecordBatch]:
        """The rows held, as one batch."""
        if not self._held:
            return []
        held, self._held = self._held, []
        start, self._held_frames = self.rows_out - self._held_frames, 0
        if len(held) == 1:
            return [self._batch(start, held[0])]
        return [self._batch(start, {name: np.concatenate([c[name] for c in held], axis=1) for name in held[0]})]

    def _batch(self, start: int, columns: dict[str, np.ndarray]) -> pa.RecordBatch:
        """Rows channel-major: all frames of channel 0, then channel 1, …"""
        first = next(iter(columns.values()))
        channels, count = first.shape[:2]
        frames = np.arange(start, start + count, dtype=np.int64)
        arrays = {
            "channel": numeric(np.repeat(np.arange(channels, dtype=np.int32), count)),
            "frame": numeric(np.tile(frames, channels)),
            "time_s": numeric(np.tile(frames * (self.extractor.hop_length / self.sample_rate), channels)),
        }
        for name, values in columns.items():
            if values.ndim == 3:
                arrays[name] = vector_array(values.reshape(channels * count, values.shape[2]))
            else:
                arrays[name] = numeric(values.astype(np.float32, copy=False))
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in self.fields], schema=self.schema)

