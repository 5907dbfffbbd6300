"""`tempo` (one row per file and channel) and `beats` (one row per beat): librosa's `beat_track`.

Both compute the onset envelope of librosa's log-mel spectrogram (its top_db floor over the
whole file, so the envelope is made when the file ends, from the spooled dB frames as logmel
does), then the global tempo (tempogram autocorrelation with a log-normal prior around
`start_bpm`) and, for `beats`, the dynamic-programming beat tracker. They keep the envelope
(one float per frame) until the file ends. With both in the chain, each computes its own
envelope.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.dsp.rhythm import OnsetEnvelope, tempo, track_beats
from audiokit.extractors.base import key_columns, param, register
from audiokit.extractors.frames import FrameExtractor, FrameStream
from audiokit.extractors.mel import MelParams, _MelExtractor
from audiokit.store.arrays import numeric


@dataclass(frozen=True)
class RhythmParams(MelParams):
    start_bpm: float = param(120.0, "centre of the tempo prior, BPM (librosa's start_bpm)", above=0, max=1000)
    std_bpm: float = param(1.0, "width of the tempo prior, octaves", above=0, max=10)
    ac_size: float = param(8.0, "autocorrelation window of the tempogram, seconds", above=0, max=60)
    max_tempo: float | None = param(320.0, "highest tempo considered, BPM; none = no limit", above=0, max=10000)
    tightness: float = param(100.0, "beats: how closely beats follow the tempo", above=0, max=100000)
    trim: bool = param(True, "beats: drop weak leading and trailing beats")


class _RhythmExtractor(_MelExtractor):
    Params = RhythmParams
    _build_torch_module = FrameExtractor._build_torch_module  # computed in the workers (numpy)

    def validate(self) -> None:
        super().validate()
        p = self.params
        if int(p.ac_size * p.sr) // p.hop_length < 2:
            raise ValueError(f"ac_size={p.ac_size} s is shorter than two hops")

    def finalize(self, db: np.ndarray) -> dict[str, np.ndarray]:
        return {"logmel": db}

    def feature_fields(self) -> list[pa.Field]:
        return []

    def start(self, channels: int, sample_rate: int) -> _RhythmStream:
        return _RhythmStream(self, channels, sample_rate)

    def rows(self, envelope: np.ndarray) -> pa.RecordBatch:
        raise NotImplementedError

    def tempo_of(self, envelope: np.ndarray) -> tuple[float, float]:
        p = self.params
        if not envelope.any():
            return 0.0, 0.0  # librosa: no onsets, tempo 0
        return tempo(
            envelope, sr=p.sr, hop_length=p.hop_length, start_bpm=p.start_bpm, std_bpm=p.std_bpm,
            ac_size=p.ac_size, max_tempo=p.max_tempo,
        )


class _RhythmStream(FrameStream):
    """Frames become the onset envelope instead of rows; the rows come when the file ends."""

    def __init__(self, extractor: _RhythmExtractor, channels: int, sample_rate: int):
        super().__init__(extractor, channels, sample_rate)
        p = extractor.params
        self.onsets = OnsetEnvelope(channels, n_fft=p.n_fft, hop_length=p.hop_length)

    def _out(self, columns: dict[str, np.ndarray], staged: bool = False) -> list[pa.RecordBatch]:
        self.onsets.push(columns["logmel"])
        return []

    def finish(self) -> Iterator[pa.RecordBatch]:
        yield from super().finish()
        yield self.extractor.rows(self.onsets.envelope())


@register
class Tempo(_RhythmExtractor):
    name = "tempo"
    table = "tempo"
    description = "global tempo (BPM) and its confidence per file and channel, librosa.beat.beat_track's estimate"

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [pa.field("bpm", pa.float64(), nullable=False), pa.field("confidence", pa.float32(), nullable=False)]
        )

    def rows(self, envelope: np.ndarray) -> pa.RecordBatch:
        figures = [self.tempo_of(channel) for channel in envelope]
        arrays = [
            numeric(np.arange(envelope.shape[0], dtype=np.int32)),
            numeric(np.array([bpm for bpm, _ in figures], dtype=np.float64)),
            numeric(np.array([confidence for _, confidence in figures], dtype=np.float32)),
        ]
        fields = [f for f in self.schema() if f.name != "file_id"]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


@register
class Beats(_RhythmExtractor):
    name = "beats"
    table = "beats"
    description = "beat times per file and channel, librosa.beat.beat_track's dynamic-programming tracker"

    def schema(self) -> pa.Schema:
        return pa.schema(
            key_columns()
            + [
                pa.field("beat", pa.int32(), nullable=False),
                pa.field("frame", pa.int64(), nullable=False),
                pa.field("time_s", pa.float64(), nullable=False),
            ]
        )

    def rows(self, envelope: np.ndarray) -> pa.RecordBatch:
        p = self.params
        channels, beats, frames = [], [], []
        for channel, env in enumerate(envelope):
            bpm, _ = self.tempo_of(env)
            found = track_beats(env, bpm, frame_rate=p.sr / p.hop_length, tightness=p.tightness, trim=p.trim)
            channels.append(np.full(found.size, channel, dtype=np.int32))
            beats.append(np.arange(found.size, dtype=np.int32))
            frames.append(found.astype(np.int64))
        frame = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
        arrays = [
            numeric(np.concatenate(channels) if channels else np.zeros(0, dtype=np.int32)),
            numeric(np.concatenate(beats) if beats else np.zeros(0, dtype=np.int32)),
            numeric(frame),
            numeric(frame * (p.hop_length / p.sr)),
        ]
        fields = [f for f in self.schema() if f.name != "file_id"]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


__all__ = ["Beats", "RhythmParams", "Tempo"]
