"""`segments` (speech / music / noise / silence stretches) and `segment_probs` (frame posteriors).

Both run the shipped frame classifier (`audiokit.models.segmenter`). `segments` then smooths
the frame decisions with a four-state HMM (Viterbi; switching label costs `switch_penalty`),
bridges short pauses inside speech and merges stretches shorter than `min_segment_s` into a
neighbour. It keeps a few numbers per 40 ms decision until the file ends (about 1 MB per hour
of audio), never the audio itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.config import check_file
from audiokit.extractors.base import Extractor, key_columns, param, register, span_columns
from audiokit.models.segmenter import (
    CLASSES,
    DECISION_SECONDS,
    SAMPLE_RATE,
    Decisions,
    FrameFeatureStream,
    load_classifier,
)
from audiokit.store.arrays import numeric, strings

LABELS = ("speech", "music", "noise", "silence")
SPEECH, MUSIC, NOISE, SILENCE = range(4)


@dataclass(frozen=True)
class SegmentsParams:
    min_segment_s: float = param(2.0, "stretches shorter than this merge into a neighbour, seconds", min=0, max=3600)
    switch_penalty: float = param(
        12.0,
        "smoothing strength: log-probability cost of changing label (0 = frame-wise decisions)",
        min=0,
        max=1000,
    )
    max_pause_s: float = param(
        1.0, "silence or noise shorter than this between speech counts as speech, seconds", min=0, max=3600
    )
    silence_db: float = param(-60.0, "frames quieter than this (dBFS) are silence", min=-200, max=0)
    weights: str | None = param(None, "classifier weights (.npz); none = the shipped segmenter-v4", check=check_file)


@dataclass(frozen=True)
class SegmentProbsParams:
    weights: str | None = param(None, "classifier weights (.npz); none = the shipped segmenter-v4", check=check_file)


# ---------------------------------------------------------------- pure smoothing logic


def silence_probability(level_db: np.ndarray, silence_db: float) -> np.ndarray:
    """Soft silence decision: 0.5 at `silence_db`, ~0.99 five dB below it."""
    return 1.0 / (1.0 + np.exp(np.clip((level_db - silence_db), -60.0, 60.0)))


def state_posteriors(probs: np.ndarray, p_silence: np.ndarray) -> np.ndarray:
    """`(T, 3)` classifier probabilities + `(T,)` silence probability → `(T, 4)` in LABELS order."""
    out = np.empty((probs.shape[0], 4), dtype=np.float64)
    out[:, :3] = probs * (1.0 - p_silence)[:, None]
    out[:, 3] = p_silence
    return out


_VITERBI_CHUNK = 8192  # frames converted to Python floats at a time: bounded transient memory


def viterbi(log_emissions: np.ndarray, switch_penalty: float) -> np.ndarray:
    """Best state path `(T,)` for emissions `(T, S)` when every change of state costs the same.

    With a uniform switch cost, a state's best predecessor is either itself or the overall best
    state of the previous frame, so the forward pass records just that argmax and which states
    switched (two bytes per frame). The loop runs on plain floats, a chunk at a time: numpy
    per-element calls would cost ten times more.
    """
    frames, states = log_emissions.shape
    if frames == 0:
        return np.zeros(0, dtype=np.int8)
    order = range(states)
    score = log_emissions[0].tolist()
    tops = np.zeros(frames, dtype=np.uint8)
    switches = np.zeros(frames, dtype=np.uint8)  # bit s set: state s came from tops[t]
    for chunk_start in range(1, frames, _VITERBI_CHUNK):
        rows = log_emissions[chunk_start : chunk_start + _VITERBI_CHUNK].tolist()
        chunk_tops = [0] * len(rows)
        chunk_switches = [0] * len(rows)
        for i, row in enumerate(rows):
            top = max(order, key=score.__getitem__)
            leave = score[top] - switch_penalty
            chunk_tops[i] = top
            mask = 0
            for s in order:
                if leave > score[s]:
                    score[s] = leave + row[s]
                    mask |= 1 << s
                else:
                    score[s] += row[s]
            chunk_switches[i] = mask
        tops[chunk_start : chunk_start + len(rows)] = chunk_tops
        switches[chunk_start : chunk_start + len(rows)] = chunk_switches
    path = np.empty(frames, dtype=np.int8)
    state = max(order, key=score.__getitem__)
    for t in range(frames - 1, -1, -1):
        path[t] = state
        if switches[t] >> state & 1:
            state = tops[t]
    return path


def runs(path: np.ndarray) -> list[list[int]]:
    """`[start, end, label]` (frames, end exclusive) for each run of equal labels in `path`."""
    if path.size == 0:
        return []
    edges = np.flatnonzero(np.diff(path)) + 1
    starts = np.r_[0, edges]
    ends = np.r_[edges, path.size]
    return [[int(s), int(e), int(path[s])] for s, e in zip(starts, ends)]


def _merge_equal_neighbours(segments: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for seg in segments:
        if out and out[-1][2] == seg[2]:
            out[-1][1] = seg[1]
        else:
            out.append(list(seg))
    return out


def bridge_pauses(segments: list[list[int]], max_pause_frames: int) -> list[list[int]]:
    """Silence or noise shorter than `max_pause_frames` with speech on both sides becomes speech."""
    out = [list(s) for s in segments]
    for i in range(1, len(out) - 1):
        start, end, label = out[i]
        if (
            label in (SILENCE, NOISE)
            and end - start < max_pause_frames
            and out[i - 1][2] == SPEECH == out[i + 1][2]
        ):
            out[i][2] = SPEECH
    return _merge_equal_neighbours(out)


def absorb_short(
    segments: list[list[int]], min_frames: int, posteriors: np.ndarray | None = None
) -> list[list[int]]:
    """Merge every segment shorter than `min_frames` into a neighbour, shortest first.

    The neighbour chosen is the one whose label the short stretch's frames find likelier (by
    summed posteriors when given), else the longer neighbour.
    """
    segs = _merge_equal_neighbours(segments)
    cumulative = None
    if posteriors is not None and len(posteriors):
        cumulative = np.vstack([np.zeros((1, posteriors.shape[1])), np.cumsum(posteriors, axis=0)])
    while len(segs) > 1:
        lengths = [e - s for s, e, _ in segs]
        i = min(range(len(segs)), key=lengths.__getitem__)
        if lengths[i] >= min_frames:
            break
        candidates = [j for j in (i - 1, i + 1) if 0 <= j < len(segs)]
        if cumulative is not None:
            mass = cumulative[segs[i][1]] - cumulative[segs[i][0]]
            target = max(candidates, key=lambda j: (mass[segs[j][2]], lengths[j]))
        else:
            target = max(candidates, key=lambda j: lengths[j])
        segs[i][2] = segs[target][2]
        segs = _merge_equal_neighbours(segs)
    return segs


def smooth(
    probs: np.ndarray,
    level_db: np.ndarray,
    *,
    switch_penalty: float,
    silence_db: float,
    max_pause_frames: int,
    min_frames: int,
) -> tuple[list[list[int]], np.ndarray]:
    """Frame probabilities `(T, 3)` and levels `(T,)` → segments `[start, end, label]` and the
    `(T, 4)` state posteriors used for their confidence."""
    posteriors = state_posteriors(
        probs.astype(np.float64), silence_probability(level_db.astype(np.float64), silence_db)
    )
    path = viterbi(np.log(posteriors + 1e-6), switch_penalty)
    segs = bridge_pauses(runs(path), max_pause_frames)
    segs = absorb_short(segs, min_frames, posteriors)
    return segs, posteriors


# ---------------------------------------------------------------- extractors


class _ClassifierStream:
    """Runs the classifier over a stream; `on_frames(probs, level)` gets each ready stretch."""

    def __init__(self, extractor: _SegmenterBase, channels: int):
        self.classifier = extractor.classifier
        self.features = FrameFeatureStream(frames=bool(self.classifier.convnets))
        self.channels = channels
        self.samples = 0
        self.frames_done = 0

    def push(self, block: np.ndarray) -> list[pa.RecordBatch]:
        self.samples += block.shape[1]
        return self._frames(self.features.push(block))

    def finish(self) -> list[pa.RecordBatch]:
        return self._frames(self.features.finish()) + self.close()

    def _frames(self, decisions: Decisions) -> list[pa.RecordBatch]:
        if decisions.features.shape[1] == 0:
            return []
        probs = self.classifier.probabilities(decisions.features, decisions.frames)
        start = self.frames_done
        self.frames_done += probs.shape[1]
        return self.on_frames(start, probs, decisions.level)

    def on_frames(self, start: int, probs: np.ndarray, level: np.ndarray) -> list[pa.RecordBatch]:
        raise NotImplementedError

    def close(self) -> list[pa.RecordBatch]:
        return []


class _SegmenterBase(Extractor):
    # Bump `version` whenever the shipped weights change: re-runs then redo these tables.
    version = 4
    preload = ("scipy.fft",)

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.classifier = load_classifier(params.weights)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE


@register
class Segments(_SegmenterBase):
    name = "segments"
    table = "segments"
    description = (
        "speech / music / noise / silence stretches covering each file (shipped model segmenter-v4)"
    )
    Params = SegmentsParams

    def validate(self) -> None:
        p = self.params
        if p.min_segment_s < 0 or p.max_pause_s < 0 or p.switch_penalty < 0:
            raise ValueError("min_segment_s, max_pause_s and switch_penalty must be >= 0")

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + span_columns()
            + [
                pa.field("label", pa.string(), nullable=False),
                pa.field("confidence", pa.float32(), nullable=False),
            ]
        )

    def start(self, channels: int, sample_rate: int) -> _SegmentsStream:
        return _SegmentsStream(self, channels)


class _SegmentsStream(_ClassifierStream):
    def __init__(self, extractor: Segments, channels: int):
        super().__init__(extractor, channels)
        self.params = extractor.params
        self.fields = [f for f in extractor.schema() if f.name != "file_id"]
        self._probs: list[np.ndarray] = []  # (C, k, 3) float32 per stretch
        self._levels: list[np.ndarray] = []

    def on_frames(self, start, probs, level):
        self._probs.append(probs.astype(np.float32))
        self._levels.append(level.astype(np.float32))
        return []

    def close(self) -> list[pa.RecordBatch]:
        duration = self.samples / SAMPLE_RATE
        if not self._probs:
            return []
        probs = np.concatenate(self._probs, axis=1)
        levels = np.concatenate(self._levels, axis=1)
        self._probs, self._levels = [], []
        p = self.params
        columns = {"channel": [], "start_s": [], "end_s": [], "label": [], "confidence": []}
        for channel in range(probs.shape[0]):
            segs, posteriors = smooth(
                probs[channel],
                levels[channel],
                switch_penalty=p.switch_penalty,
                silence_db=p.silence_db,
                max_pause_frames=round(p.max_pause_s / DECISION_SECONDS),
                min_frames=round(p.min_segment_s / DECISION_SECONDS),
            )
            for start, end, label in segs:
                # Decision k covers (k ± 0.5) * 40 ms; the outer edges are the file's (as counted
                # at 16 kHz: within one 16 kHz sample of files.duration_s).
                start_s = 0.0 if start == 0 else (start - 0.5) * DECISION_SECONDS
                end_s = duration if end == len(posteriors) else (end - 0.5) * DECISION_SECONDS
                if start_s >= duration:  # a file shorter than its last decision step
                    continue
                columns["channel"].append(channel)
                columns["start_s"].append(start_s)
                columns["end_s"].append(min(end_s, duration))
                columns["label"].append(LABELS[label])
                columns["confidence"].append(float(posteriors[start:end, label].mean()))
        arrays = [
            numeric(np.asarray(columns["channel"], dtype=np.int32)),
            numeric(np.asarray(columns["start_s"], dtype=np.float64)),
            numeric(np.asarray(columns["end_s"], dtype=np.float64)),
            strings(list(columns["label"])),
            numeric(np.asarray(columns["confidence"], dtype=np.float32)),
        ]
        return [pa.RecordBatch.from_arrays(arrays, schema=pa.schema(self.fields))]


@register
class SegmentProbs(_SegmenterBase):
    name = "segment_probs"
    table = "segment_probs"
    description = "speech / music / noise probabilities of the segments classifier every 40 ms"
    Params = SegmentProbsParams

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [pa.field("time_s", pa.float64(), nullable=False)]
            + [pa.field(f"p_{name}", pa.float32(), nullable=False) for name in CLASSES]
        )

    def start(self, channels: int, sample_rate: int) -> _ProbsStream:
        return _ProbsStream(self, channels)


class _ProbsStream(_ClassifierStream):
    def __init__(self, extractor: SegmentProbs, channels: int):
        super().__init__(extractor, channels)
        self.fields = [f for f in extractor.schema() if f.name != "file_id"]

    def on_frames(self, start, probs, level):
        channels, count, _ = probs.shape
        times = np.arange(start, start + count, dtype=np.float64) * DECISION_SECONDS
        arrays = [
            numeric(np.repeat(np.arange(channels, dtype=np.int32), count)),
            numeric(np.tile(times, channels)),
        ] + [numeric(probs[..., k]) for k in range(len(CLASSES))]
        return [pa.RecordBatch.from_arrays(arrays, schema=pa.schema(self.fields))]


__all__ = ["SegmentProbs", "Segments", "absorb_short", "bridge_pauses", "runs", "smooth", "viterbi"]
