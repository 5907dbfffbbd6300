"""Frame features on the torch backend: per file (streaming) and packed across files.

`compute_batch(extractor, signals)` takes the resampled signals of many files (each
`(channels, n)` float32 at the extractor's rate) and returns, per file, the same columns the
numpy `FrameStream` gives for that file once it is finished (`(channels, frames, ...)` arrays,
librosa's per-file `top_db` floor applied). How:

- Every (file, channel) signal is cut into chunks of at most `max_frames` frames; chunks are
  copied back to back, centre padding included (the extractor's pad modes), into one flat host
  buffer per pad mode, each chunk starting at a multiple of `hop_length`.
  Framing the flat buffer with stride `hop_length` (a view) and picking the frames that start
  inside a chunk (`index_select`) gives every file's frames, and no padding frames are computed.
- Chunks are grouped into device batches of at most `max_frames` frames (the memory budget:
  about `20 * frame_length` bytes of device memory per frame while computing). On CUDA the
  host buffers are pinned and double-buffered, copies are asynchronous, and the only
  synchronisation is the one copy back at the end of the call.
- Mel dB values stay on the device unfloored until every chunk is done; then the per-file peak
  (a scatter `amax` over each frame's file index) gives each file its floor, the DCT runs, and
  the columns come back to the host in one copy and are split per file.

`FrameDeviceStage` is a frame extractor's device stage (see `audiokit.stages`): decode workers
keep each file's resampled signal, and the process that owns the device computes many files'
rows with `compute_batch`.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import torch

from audiokit.dsp import n_frames, torch_ops
from audiokit.extractors.base import TooLongForDevice
from audiokit.extractors.frames import FrameExtractor, FrameStream

BYTES_PER_FRAME_SAMPLE = 20  # frames, windowed copy, complex spectrum, power, scratch (float32)
CPU_BUDGET_BYTES = 512 << 20
CUDA_BUDGET_FRACTION = 0.25


def default_max_frames(extractor: FrameExtractor, device: str) -> int:
    """Frames per device batch that fit the memory budget of `device`."""
    budget = CPU_BUDGET_BYTES
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        budget = int(free * CUDA_BUDGET_FRACTION)
    # Other pad modes only add a flat signal (hop_length samples per frame), never frames.
    per_frame = BYTES_PER_FRAME_SAMPLE * extractor.frame_length + 4 * extractor.hop_length * len(
        extractor.pad_modes
    )
    return max(1, budget // per_frame)


class _HostBuffers:
    """Flat float32 staging buffers, pinned on CUDA and used in turn so that filling one never
    races the asynchronous copy still reading the other."""

    def __init__(self, pinned: bool, count: int = 2):
        self.pinned = pinned
        self.buffers: list[torch.Tensor | None] = [None] * count
        self.events: list[object | None] = [None] * count
        self.turn = 0

    def take(self, size: int) -> tuple[torch.Tensor, int]:
        slot = self.turn
        self.turn = (self.turn + 1) % len(self.buffers)
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # its previous copy must have finished reading it
            self.events[slot] = None
        buf = self.buffers[slot]
        if buf is None or buf.numel() < size:
            buf = torch.empty(max(size, 1 << 20), dtype=torch.float32, pin_memory=self.pinned)
            self.buffers[slot] = buf
        return buf, slot

    def copied(self, slot: int) -> None:
        if self.pinned:
            event = torch.cuda.Event()
            event.record()
            self.events[slot] = event


def _copy_padded(
    dst: np.ndarray, row: np.ndarray, lo: int, span: int, width: int, mode: str
) -> None:
    """`dst[:span] = padded(row)[lo : lo + span]`, where `padded` is `row` centre-padded by
    `width` samples (zeros or repeated edge samples), without building the padded row."""
    n = row.shape[0]
    hi = lo + span
    head_end = min(hi, width) - lo  # left padding, in dst coordinates
    body_lo, body_hi = max(lo, width), min(hi, width + n)
    if head_end > 0:
        dst[:head_end] = 0.0 if mode == "constant" else row[0]
    if body_hi > body_lo:
        dst[body_lo - lo : body_hi - lo] = row[body_lo - width : body_hi - width]
    tail_start = max(lo, width + n) - lo
    if tail_start < span:
        dst[tail_start:span] = 0.0 if mode == "constant" else row[-1]


def compute_batch(
    extractor: FrameExtractor, signals: list[np.ndarray], *, max_frames: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Columns of every file in `signals` (each `(channels, n)` at the extractor's rate), computed
    in packed device batches; equal to running each file through the numpy extractor."""
    module = extractor.torch_module()
    device = torch.device(extractor.torch_device)
    on_cuda = device.type == "cuda"
    frame_length, hop = extractor.frame_length, extractor.hop_length
    width = frame_length // 2 if extractor.center else 0
    max_frames = max_frames or default_max_frames(extractor, extractor.torch_device)
    if max_frames < 1:
        raise ValueError(f"max_frames must be positive, got {max_frames}")

    signals = [np.asarray(s, dtype=np.float32) for s in signals]
    for s in signals:
        if s.ndim != 2:
            raise ValueError("signals must have shape (channels, n)")
    counts = [
        n_frames(s.shape[1], frame_length, hop, extractor.center) if s.shape[1] else 0
        for s in signals
    ]
    # Chunks in output order: file, channel, frame; each (file, channel, first frame, frames).
    chunks = [
        (f, c, start, min(max_frames, counts[f] - start))
        for f, s in enumerate(signals)
        for c in range(s.shape[0])
        for start in range(0, counts[f], max_frames)
    ]
    batches: list[list[tuple[int, int, int, int]]] = []
    size = max_frames
    for chunk in chunks:
        if size + chunk[3] > max_frames:
            batches.append([])
            size = 0
        batches[-1].append(chunk)
        size += chunk[3]

    hosts = [_HostBuffers(pinned=on_cuda) for _ in extractor.pad_modes]
    outputs: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for batch in batches:
            spans = [(count - 1) * hop + frame_length for _f, _c, _s, count in batch]
            offsets = np.cumsum([0] + [math.ceil(span / hop) * hop for span in spans])
            total = int(offsets[-1])
            starts = np.concatenate(
                [offsets[i] // hop + np.arange(chunk[3]) for i, chunk in enumerate(batch)]
            ).astype(np.int64)
            index = torch.from_numpy(starts).to(device, non_blocking=on_cuda)
            flats = []
            for mode_index, host in enumerate(hosts):
                buf, slot = host.take(total)
                flat = buf.numpy()
                mode = extractor.pad_modes[mode_index]
                # Samples between chunks belong to no selected frame: they are left as they are.
                for i, (f, c, start, _count) in enumerate(batch):
                    dst = flat[offsets[i] : offsets[i] + spans[i]]
                    _copy_padded(dst, signals[f][c], start * hop, spans[i], width, mode)
                flats.append(buf[:total].to(device, non_blocking=on_cuda))
                host.copied(slot)
            frames = torch_ops.frame(flats[0], frame_length, hop).index_select(0, index)
            if isinstance(module, torch_ops.SpectralFeatures):
                # zcr counts sign changes on the edge-padded signal: a prefix sum over the
                # flat buffer gives every frame's count without a second set of frames.
                zcr = torch_ops.strided_zcr(
                    flats[1], index * hop, frame_length, threshold=module.zcr_threshold
                )
                batch_columns = module(frames, zcr=zcr)
            else:
                batch_columns = extractor.torch_columns(module, [frames])
            for name, values in batch_columns.items():
                outputs.setdefault(name, []).append(values)

        columns = {name: torch.cat(parts) for name, parts in outputs.items()}
        frames_per_file = [counts[f] * s.shape[0] for f, s in enumerate(signals)]
        if "_db" in columns:
            file_index = torch.repeat_interleave(
                torch.arange(len(signals)), torch.tensor(frames_per_file, dtype=torch.int64)
            ).to(device, non_blocking=on_cuda)
            db = columns.pop("_db")
            peaks = torch_ops.segment_max(db, file_index, len(signals))
            floor = (peaks - extractor.peak_floor_db)[file_index]
            columns = module.finalize(torch_ops.apply_floor(db, floor))
        host_columns = {}
        for name, values in columns.items():
            if on_cuda:
                out = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                out.copy_(values, non_blocking=True)
            else:
                out = values
            host_columns[name] = out
        if on_cuda:
            torch.cuda.current_stream(device).synchronize()  # the one sync of the call
        host_columns = {name: values.numpy() for name, values in host_columns.items()}

    results = []
    row = 0
    for f, s in enumerate(signals):
        channels, count = s.shape[0], counts[f]
        rows = channels * count
        results.append(
            {
                name: values[row : row + rows].reshape((channels, count) + values.shape[1:])
                for name, values in host_columns.items()
            }
            if host_columns
            else _empty_columns(extractor, channels)
        )
        row += rows
    return results


def _empty_columns(extractor: FrameExtractor, channels: int) -> dict[str, np.ndarray]:
    """Columns of a batch where no file yields a frame (nothing was computed)."""
    out = {}
    for field in extractor.feature_fields():
        if pa.types.is_fixed_size_list(field.type):
            out[field.name] = np.zeros((channels, 0, field.type.list_size), dtype=np.float32)
        else:
            out[field.name] = np.zeros((channels, 0), dtype=np.float32)
    return out


def record_batches(
    extractor: FrameExtractor, columns: dict[str, np.ndarray], sample_rate: int
) -> list[pa.RecordBatch]:
    """The rows of one file's columns (every column but `file_id`), as `FrameStream` builds them."""
    first = next(iter(columns.values()))
    if first.shape[1] == 0:
        return []
    return FrameStream(extractor, first.shape[0], sample_rate).rows_of(columns)


class _SignalCollector:
    """A stream that keeps the blocks it is fed (up to `max_samples`) and emits no rows."""

    def __init__(self, channels: int, sample_rate: int, max_samples: int):
        self.blocks: list[np.ndarray] = []
        self.channels = channels
        self.sample_rate = sample_rate
        self.samples = 0
        self.max_samples = max_samples

    def push(self, block: np.ndarray) -> list:
        self.samples += block.shape[1]
        if self.samples > self.max_samples:
            self.blocks = []
            raise TooLongForDevice()
        self.blocks.append(np.array(block, dtype=np.float32, copy=True))
        return []

    def finish(self) -> list:
        return []

    def held(self) -> tuple[np.ndarray, int]:
        """The file's signal `(channels, n)` and its rate."""
        if not self.blocks:
            return np.zeros((self.channels, 0), dtype=np.float32), self.sample_rate
        return np.concatenate(self.blocks, axis=1), self.sample_rate


class FrameDeviceStage:
    """A frame extractor's device stage: workers keep each file's resampled signal (one copy per
    rate, shared by every frame extractor at that rate); `compute` packs many files into
    device batches of `max_frames` frames."""

    def __init__(self, extractor: FrameExtractor):
        self.extractor = extractor
        self._max_frames: int | None = None

    def key(self, sample_rate: int) -> tuple:
        return ("signal", sample_rate)

    def collector(self, channels: int, sample_rate: int, max_seconds: float) -> _SignalCollector:
        return _SignalCollector(channels, sample_rate, int(max_seconds * sample_rate))

    @property
    def max_frames(self) -> int:
        if self._max_frames is None:
            self.extractor.torch_module()  # resolves extractor.torch_device
            self._max_frames = default_max_frames(self.extractor, self.extractor.torch_device)
        return self._max_frames

    def load(self, held: tuple[np.ndarray, int]) -> float:
        """The file's share of one device batch."""
        signal, _rate = held
        frames = signal.shape[0] * signal.shape[1] // self.extractor.hop_length + 1
        return frames / self.max_frames

    def compute(self, helds: list[tuple[np.ndarray, int]]) -> list:
        columns = compute_batch(self.extractor, [signal for signal, _rate in helds], max_frames=self.max_frames)
        return [(cols, rate) for cols, (_signal, rate) in zip(columns, helds)]

    def rows(self, payload) -> list[pa.RecordBatch]:
        return record_batches(self.extractor, *payload)


__all__ = ["FrameDeviceStage", "compute_batch", "default_max_frames", "record_batches"]
