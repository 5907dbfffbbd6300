"""Pure, vectorised array functions: framing, spectra, mel, cepstra, spectral statistics.

Conventions: time runs along the second-to-last axis (`(..., frames, bins)`), so rows of the
output tables come straight out of these arrays; leading axes (channels, files) broadcast.
Parameter names and meanings are librosa's; the numbers match `librosa.feature.*`.
"""

from audiokit.dsp.cepstrum import dct_matrix, lifter_weights, power_to_db
from audiokit.dsp.framing import StreamFramer, frame, n_frames
from audiokit.dsp.mel import fft_frequencies, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz
from audiokit.dsp.spectral import (
    frame_rms,
    frame_zcr,
    spectral_bandwidth,
    spectral_centroid,
    spectral_flatness,
    spectral_rolloff,
)
from audiokit.dsp.spectrum import magnitude_spectrum, stft_window

__all__ = [
    "StreamFramer",
    "dct_matrix",
    "fft_frequencies",
    "frame",
    "frame_rms",
    "frame_zcr",
    "hz_to_mel",
    "lifter_weights",
    "magnitude_spectrum",
    "mel_filterbank",
    "mel_frequencies",
    "mel_to_hz",
    "n_frames",
    "power_to_db",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_flatness",
    "spectral_rolloff",
    "stft_window",
]
