"""Model front ends built on our DSP core (numpy): what each network expects as input.

Two shapes of front end exist:
- a *stream* front end turns the whole signal into feature frames, block by block, and the
  windows are cut from those frames (GE2E: resemblyzer computes the mel spectrogram of the whole
  utterance and slices its partial utterances from it);
- a *clip* front end turns each window's samples into features on its own (CNN14 and VGGish-like
  models take a clip and pad its edges themselves).
"""

from __future__ import annotations

import numpy as np

from audiokit.dsp import StreamFramer, frame, mel_filterbank, stft_window
from audiokit.dsp.spectrum import power_spectrum


class PowerMelStream:
    """Streaming power mel spectrogram `[shape=(channels, T, n_mels)]`, librosa's
    `melspectrogram(center=True, pad_mode="constant")`: frame `t` is centred at `t * hop`."""

    def __init__(self, *, sr: int, n_fft: int, hop_length: int, n_mels: int, fmin: float = 0.0, fmax=None):
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.window = stft_window(n_fft)
        self.mel_basis_t = np.ascontiguousarray(
            mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
        )
        self.framer = StreamFramer(n_fft, hop_length, center=True, pad_mode="constant")
        self.n_fft = n_fft

    def _mel(self, segment: np.ndarray, channels: int) -> np.ndarray:
        if segment.size == 0 or segment.shape[-1] < self.n_fft:
            return np.zeros((channels, 0, self.n_mels), dtype=np.float32)
        frames = frame(segment, self.n_fft, self.hop_length)
        return (power_spectrum(frames, self.window) @ self.mel_basis_t).astype(np.float32, copy=False)

    def push(self, block: np.ndarray) -> np.ndarray:
        return self._mel(self.framer.push(block), block.shape[0])

    def finish(self, channels: int) -> np.ndarray:
        return self._mel(self.framer.finish(), channels)


class LogMelClip:
    """Per-clip log-mel `[shape=(B, T, n_mels)]` of `clips [shape=(B, n)]`, the front end of
    PANNs (torchlibrosa): centred frames with reflect padding, periodic Hann, power spectrum,
    Slaney mel filters, `10*log10(max(amin, mel))`."""

    def __init__(
        self,
        *,
        sr: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        fmin: float = 0.0,
        fmax: float | None = None,
        amin: float = 1e-10,
        pad_mode: str = "reflect",
        log_offset: float | None = None,
    ):
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.amin = amin
        self.pad_mode = pad_mode
        self.log_offset = log_offset
        self.window = stft_window(n_fft)
        self.mel_basis_t = np.ascontiguousarray(
            mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
        )

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        pad = self.n_fft // 2
        padded = np.pad(clips, [(0, 0)] * (clips.ndim - 1) + [(pad, pad)], mode=self.pad_mode)
        frames = frame(padded, self.n_fft, self.hop_length)
        mel = power_spectrum(frames, self.window) @ self.mel_basis_t
        if self.log_offset is not None:  # natural log of (mel + offset), e.g. VGGish-style
            return np.log(mel + np.float32(self.log_offset)).astype(np.float32)
        return (10.0 * np.log10(np.maximum(mel, np.float32(self.amin)))).astype(np.float32)


__all__ = ["LogMelClip", "PowerMelStream"]
