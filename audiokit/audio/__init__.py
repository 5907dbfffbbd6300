"""Decoding, channel policy and resampling: a file becomes blocks of float32 samples per rate."""

from audiokit.audio.decode import AudioInfo, open_audio
from audiokit.audio.resample import Resampler
from audiokit.audio.stream import apply_channel_policy, output_channels

__all__ = ["AudioInfo", "Resampler", "apply_channel_policy", "open_audio", "output_channels"]
