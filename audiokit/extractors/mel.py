"""`mfcc` and `logmel`: mel spectra computed by our DSP core, with librosa's parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from audiokit.dsp import (
    dct_matrix,
    frame,
    lifter_weights,
    mel_filterbank,
    power_to_db,
    stft_window,
)
from audiokit.dsp.delta import DELTA_MODES, StreamDelta
from audiokit.dsp.framing import rowwise_matmul
from audiokit.dsp.mel import BandedFilterbank
from audiokit.dsp.spectrum import check_window, power_spectrum
from audiokit.extractors.base import param, register, vector_type
from audiokit.extractors.frames import FrameExtractor


def check_odd(value: int) -> None:
    """an odd number"""
    if value % 2 == 0:
        raise ValueError("must be odd")


@dataclass(frozen=True)
class StftParams:
    sr: int = param(22050, "sample rate the audio is resampled to (soxr HQ), Hz", min=1000, max=384000)
    n_fft: int = param(2048, "FFT size in samples", min=16, max=65536)
    hop_length: int = param(512, "samples between frame starts", min=1, max=65536)
    win_length: int | None = param(None, "window length (<= n_fft); none = n_fft", min=1, max=65536)
    window: str = param("hann", "window name understood by scipy.signal.get_window", check=check_window)
    center: bool = param(True, "pad n_fft//2 on both sides so frame t is centred at t*hop/sr")
    pad_mode: str = param("constant", "padding for center", choices=("constant", "edge"))


@dataclass(frozen=True)
class MelParams(StftParams):
    n_mels: int = param(128, "number of mel bands", min=1, max=1024)
    fmin: float = param(0.0, "lowest band edge, Hz", min=0)
    fmax: float | None = param(None, "highest band edge, Hz; none = sr/2", above=0)
    htk: bool = param(False, "HTK mel formula instead of Slaney's")
    norm: str | None = param("slaney", "filter normalisation: slaney or none", choices=("slaney", None))
    power: float = param(2.0, "exponent of the magnitude spectrum (2 = power)", above=0, max=8)
    ref: float = param(1.0, "reference power for dB (power_to_db's ref)", above=0)
    amin: float = param(1e-10, "floor before the logarithm", above=0)
    top_db: float | None = param(80.0, "floor at the file's peak minus this many dB; none = no floor", min=0)

    @property
    def filter_norm(self) -> str | None:
        return self.norm


@dataclass(frozen=True)
class MfccParams(MelParams):
    n_mfcc: int = param(20, "number of cepstral coefficients", min=1, max=1024)
    dct_type: int = param(2, "DCT type (only 2 is supported)", choices=(2,))
    # As in librosa.feature.mfcc: `norm` is the DCT's, `mel_norm` the filterbank's.
    norm: str | None = param("ortho", "DCT normalisation: ortho or none", choices=("ortho", None))
    mel_norm: str | None = param("slaney", "mel filter normalisation: slaney or none", choices=("slaney", None))

    @property
    def filter_norm(self) -> str | None:
        return self.mel_norm
    lifter: float = param(0.0, "cepstral liftering (0 = none)", min=0)
    deltas: int = param(0, "also write mfcc_delta (1) and mfcc_delta2 (2): librosa.feature.delta", choices=(0, 1, 2))
    delta_width: int = param(9, "frames in each delta's window (odd, as librosa's width)", min=3, max=999, check=check_odd)
    delta_mode: str = param("interp", "deltas at the file's edges (librosa's mode)", choices=DELTA_MODES)


class _MelExtractor(FrameExtractor):
    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        p = params
        self.frame_length = p.n_fft
        self.hop_length = p.hop_length
        self.center = p.center
        self.pad_modes = (p.pad_mode,)
        self.peak_floor_db = p.top_db
        self.window = stft_window(p.n_fft, p.win_length, p.window)
        self.mel_basis = mel_filterbank(
            sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax, htk=p.htk, norm=p.filter_norm
        )
        self.apply_mel = BandedFilterbank(self.mel_basis)

    def validate(self) -> None:
        p = self.params
        if p.fmax is not None and not 0 <= p.fmin < p.fmax <= p.sr / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={p.fmin}, fmax={p.fmax}, sr={p.sr}")

    def mel_db(self, segment: np.ndarray) -> np.ndarray:
        p = self.params
        frames = frame(segment, self.frame_length, self.hop_length)
        spectrum = power_spectrum(frames, self.window)
        if p.power != 2.0:
            spectrum = spectrum ** np.float32(p.power / 2.0)
        mel = self.apply_mel(spectrum)
        return power_to_db(mel, ref=p.ref, amin=p.amin, top_db=None)

    def _build_torch_module(self):
        from audiokit.dsp.torch_ops import MelFeatures

        p = self.params
        dct_t = getattr(self, "dct_t", None)
        return MelFeatures(
            window=self.window, mel_basis_t=self.mel_basis.T, power=p.power, ref=p.ref, amin=p.amin,
            column=self.name, dct_t=dct_t,
        )

    def compute(self, segments: list[np.ndarray]) -> dict[str, np.ndarray]:
        db = self.mel_db(segments[0])
        return {"_db": db} if self.peak_floor_db is not None else self.finalize(db)


@register
class LogMel(_MelExtractor):
    name = "logmel"
    table = "logmel"
    description = "log-mel spectrogram: power_to_db(melspectrogram(...)), librosa's definition"
    Params = MelParams

    def feature_fields(self) -> list[pa.Field]:
        return [pa.field("logmel", vector_type(self.params.n_mels))]

    def finalize(self, db: np.ndarray) -> dict[str, np.ndarray]:
        return {"logmel": db}


@register
class Mfcc(_MelExtractor):
    name = "mfcc"
    table = "mfcc"
    description = "mel-frequency cepstral coefficients, equal to librosa.feature.mfcc"
    Params = MfccParams

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        basis = dct_matrix(params.n_mfcc, params.n_mels, norm=params.norm)
        self.dct_t = np.ascontiguousarray((basis * lifter_weights(params.n_mfcc, params.lifter)[:, None]).T)

    def validate(self) -> None:
        super().validate()
        if self.params.n_mfcc > self.params.n_mels:
            raise ValueError(f"n_mfcc={self.params.n_mfcc} exceeds n_mels={self.params.n_mels}")

    def feature_fields(self) -> list[pa.Field]:
        names = ["mfcc", "mfcc_delta", "mfcc_delta2"][: 1 + self.params.deltas]
        return [pa.field(name, vector_type(self.params.n_mfcc)) for name in names]

    def finalize(self, db: np.ndarray) -> dict[str, np.ndarray]:
        return {"mfcc": rowwise_matmul(db, self.dct_t)}

    def row_stage(self, channels: int) -> _DeltaStage | None:
        p = self.params
        return _DeltaStage(p.deltas, p.delta_width, p.delta_mode) if p.deltas else None


class _DeltaStage:
    """Holds each file's MFCC rows until their deltas (librosa.feature.delta over frames,
    `width // 2` frames of look-ahead) are known, then lets them through with the delta columns."""

    def __init__(self, deltas: int, width: int, mode: str):
        self.names = ["mfcc_delta", "mfcc_delta2"][:deltas]
        self.streams = [StreamDelta(width, order, mode) for order in range(1, deltas + 1)]
        self.held: np.ndarray | None = None  # mfcc rows whose deltas are not out yet

    def push(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mfcc = columns["mfcc"]
        self.held = mfcc if self.held is None else np.concatenate([self.held, mfcc], axis=1)
        return self._release([s.push(mfcc) for s in self.streams])

    def finish(self) -> dict[str, np.ndarray]:
        if self.held is None:
            return {}
        return self._release([s.finish() for s in self.streams])

    def _release(self, deltas: list[np.ndarray]) -> dict[str, np.ndarray]:
        count = deltas[0].shape[1]
        out = {"mfcc": self.held[:, :count]}
        out.update(zip(self.names, deltas))
        self.held = self.held[:, count:]
        return out


__all__ = ["LogMel", "MelParams", "Mfcc", "MfccParams", "StftParams"]
