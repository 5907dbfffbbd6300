"""A map-style `torch.utils.data.Dataset` over a frame table: `audiokit.open(OUT).torch("mfcc")`.

    ds = audiokit.open("features/")
    data = ds.torch("mfcc", labels="segments")                  # one item per file (and channel)
    data = ds.torch("mfcc", window_frames=128, hop_frames=64)    # fixed windows
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=2, collate_fn=data.collate)
    for batch in loader:
        batch["features"]   # float32 [batch, frames (padded), n]
        batch["lengths"]    # int64 [batch]: real frames of each item
        batch["labels"]     # as given by `labels` (per-frame ones padded with IGNORE_INDEX)

torch is imported here only, so the rest of audiokit runs without it. Items hold the reader's
snapshot: a worker process gets a pickled copy (the `files` table, not a second read of it) and
opens its own Parquet files.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from audiokit.errors import ConfigError
from audiokit.reader import DatasetReader, feature_columns

IGNORE_INDEX = -100  # padding of per-frame labels: torch.nn.CrossEntropyLoss's default ignore_index
SEGMENT_LABELS = ("speech", "music", "noise", "silence")


class FrameDataset(torch.utils.data.Dataset):
    """Items are files (variable length) or fixed windows of `window_frames` every `hop_frames`.

    `labels`: None; the name of a `files` column; a mapping relpath -> label; a callable taking
    the file's `files` row; or `"segments"` for one label per frame from the segments table
    (an index into `label_names`, IGNORE_INDEX where no segment covers the frame). `files`
    limits the items to some relpaths; by default every file with status `ok` and rows in the
    table. A file shorter than a window gives one window, zero-padded (its `length` says how
    much is real); the frames after a file's last whole window are not used. Each process keeps
    the frames of the files it read last, up to `cache_bytes`, for their other windows.
    """

    def __init__(
        self,
        reader: DatasetReader,
        table: str,
        *,
        window_frames: int | None = None,
        hop_frames: int | None = None,
        columns: list[str] | None = None,
        labels: str | Mapping | Callable | None = None,
        label_names: Iterable[str] = SEGMENT_LABELS,
        files: Iterable[str] | None = None,
        cache_bytes: int = 256 << 20,
    ):
        if window_frames is not None and window_frames < 1:
            raise ConfigError("window_frames must be at least 1")
        if hop_frames is not None and (window_frames is None or hop_frames < 1):
            raise ConfigError("hop_frames needs window_frames and must be at least 1")
        self.reader = reader
        self.table = table
        self.columns = columns or feature_columns(reader._frame_table(table))
        self.window_frames = window_frames
        self.hop_frames = hop_frames or window_frames
        self.labels = labels
        self.label_names = list(label_names)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict = OrderedDict()
        counts = _frame_counts(reader, table)
        if files is None:  # every ok file, in relpath order
            rows = zip(*(reader.files.column(c).to_pylist() for c in ("relpath", "file_id", "status")))
            ids = [file_id for _, file_id, status in sorted(rows, key=lambda r: r[0] or "") if status == "ok"]
        else:
            ids = [reader.file_id(f) for f in files]
        # items: (file_id, channel, first frame, frames available)
        self.items: list[tuple[str, int, int, int]] = []
        for file_id in ids:
            for channel, n in sorted(counts.get(file_id, {}).items()):
                if window_frames is None:
                    self.items.append((file_id, channel, 0, n))
                elif n <= window_frames:
                    self.items.append((file_id, channel, 0, n))
                else:
                    for start in range(0, n - window_frames + 1, self.hop_frames):
                        self.items.append((file_id, channel, start, window_frames))

    def __getstate__(self) -> dict:
        # A worker gets the items and the snapshot, not the frames this process has cached.
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        file_id, channel, start, length = self.items[index]
        frames, frame_labels = self._file(file_id, channel)
        features = frames[start : start + length]
        size = self.window_frames or length
        if features.shape[0] < size:
            features = np.concatenate([features, np.zeros((size - features.shape[0], features.shape[1]), np.float32)])
        row = self.reader.file(file_id)
        item = {
            "features": torch.from_numpy(np.ascontiguousarray(features)),
            "length": length,
            "file_id": file_id,
            "relpath": row["relpath"],
            "channel": channel,
            "start_frame": start,
            "row": row,
        }
        if frame_labels is not None:
            labels = np.full(size, IGNORE_INDEX, dtype=np.int64)
            labels[:length] = frame_labels[start : start + length]
            item["labels"] = torch.from_numpy(labels)
        elif self.labels is not None:
            item["labels"] = self._file_label(row)
        return item

    def _file(self, file_id: str, channel: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A file's frames (and per-frame labels), kept for the next windows of the same file."""
        key = (file_id, channel)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = self.reader.frames(self.table, file_id, channel=channel, columns=self.columns)
        frame_labels = None
        if self.labels == "segments":
            times = self.reader.frame_times(self.table, file_id, channel=channel)
            frame_labels = _labels_at(self.reader.segments(file_id, channel=channel), times, self.label_names)
        self._cache[key] = (frames, frame_labels)
        while len(self._cache) > 1 and sum(f.nbytes for f, _ in self._cache.values()) > self.cache_bytes:
            self._cache.popitem(last=False)
        return frames, frame_labels

    def _file_label(self, row: dict):
        if callable(self.labels):
            return self.labels(row)
        if isinstance(self.labels, Mapping):
            return self.labels.get(row["relpath"], self.labels.get(row["file_id"]))
        if isinstance(self.labels, str):
            if self.labels not in row:
                raise ConfigError(f"labels={self.labels!r}: not a files column nor 'segments'")
            return row[self.labels]
        raise ConfigError(f"labels={self.labels!r}: give a files column, a mapping, a callable or 'segments'")

    @staticmethod
    def collate(items: list[dict]) -> dict:
        """Pad to the longest item: features [batch, frames, n], lengths [batch]; per-frame labels
        padded with IGNORE_INDEX; numeric file labels as a tensor, others as a list."""
        lengths = torch.tensor([item["length"] for item in items], dtype=torch.int64)
        longest = max(item["features"].shape[0] for item in items)
        n = items[0]["features"].shape[1]
        features = torch.zeros((len(items), longest, n), dtype=torch.float32)
        for i, item in enumerate(items):
            features[i, : item["features"].shape[0]] = item["features"]
        batch = {
            "features": features,
            "lengths": lengths,
            **{key: [item[key] for item in items] for key in ("file_id", "relpath", "channel", "start_frame", "row")},
        }
        if "labels" in items[0]:
            labels = [item["labels"] for item in items]
            if isinstance(labels[0], torch.Tensor):
                padded = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.int64)
                for i, label in enumerate(labels):
                    padded[i, : label.shape[0]] = label
                batch["labels"] = padded
            elif all(isinstance(v, (int, float, bool, np.integer, np.floating)) for v in labels):
                batch["labels"] = torch.tensor(labels)
            else:
                batch["labels"] = labels
        return batch


def _frame_counts(reader: DatasetReader, table: str) -> dict[str, dict[int, int]]:
    """file_id -> channel -> frames, for the files of the reader's snapshot (the key columns of
    each part, nothing else)."""
    import pyarrow.parquet as pq

    counts: dict[str, dict[int, int]] = {}
    parts = sorted({p for ps in reader._part_index(table).values() for p in ps})
    for part in parts:
        keys = (
            pq.read_table(part, columns=["file_id", "channel"])
            .group_by(["file_id", "channel"])
            .aggregate([([], "count_all")])
        )
        for file_id, channel, n in zip(*(keys.column(c).to_pylist() for c in ("file_id", "channel", "count_all"))):
            if file_id in reader._row_of:
                counts.setdefault(file_id, {})[channel] = n
    return counts


def _labels_at(segments, times: np.ndarray, names: list[str]) -> np.ndarray:
    """The index in `names` of the segment covering each frame time (IGNORE_INDEX: none)."""
    out = np.full(times.shape[0], IGNORE_INDEX, dtype=np.int64)
    starts = segments.column("start_s").to_numpy()
    ends = segments.column("end_s").to_numpy()
    for start, end, label in zip(starts, ends, segments.column("label").to_pylist()):
        if label in names:
            out[(times >= start) & (times < end)] = names.index(label)
    if starts.size:  # the frame centred exactly on the file's end belongs to the last segment
        last = ends.argmax()
        label = segments.column("label")[int(last)].as_py()
        if label in names:
            out[(times == ends[last])] = names.index(label)
    return out


__all__ = ["IGNORE_INDEX", "SEGMENT_LABELS", "FrameDataset"]
