"""The decoder on real encoded files: every format, blocks, channel policy, broken files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_audio, write_av

from audiokit.audio import Resampler, apply_channel_policy, open_audio
from audiokit.errors import DecodeError


def decode_all(path, block=4096):
    with open_audio(str(path)) as reader:
        blocks = list(reader.blocks(block))
        return reader.info, np.concatenate(blocks) if blocks else np.zeros((0, reader.info.channels))


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
@pytest.mark.parametrize("sr,channels", [(8000, 1), (44100, 2), (48000, 1)])
def test_libsndfile_formats(tmp_path, ext, sr, channels):
    data = tone(sr, 1.3, channels=channels)
    path = write_audio(tmp_path / f"x.{ext}", data, sr)
    info, samples = decode_all(path)
    assert (info.sample_rate, info.channels, info.backend) == (sr, channels, "soundfile")
    assert abs(samples.shape[0] / sr - 1.3) / 1.3 < 0.02  # lossy codecs pad a little
    if ext in ("wav", "flac"):
        np.testing.assert_allclose(samples, data, atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("name,codec,container", [("x.m4a", "aac", None), ("x.webm", "libopus", "webm"), ("x.mka", "ac3", "matroska")])
def test_ffmpeg_fallback_formats(tmp_path, name, codec, container):
    data = tone(48000, 3.0, channels=2)
    path = write_av(tmp_path / name, data, 48000, codec, container)
    info, samples = decode_all(path)
    assert info.backend == "pyav" and info.sample_rate == 48000 and info.channels == 2
    # AAC keeps its encoder priming (~1024 samples), as ffmpeg does for this file.
    assert abs(samples.shape[0] / 48000 - 3.0) / 3.0 < 0.02
    assert samples.dtype == np.float32 and 0.1 < np.abs(samples).max() < 1.0


@pytest.mark.parametrize("block", [1000, 480000])
def test_ffmpeg_blocks_hold_exactly_the_decoded_samples(tmp_path, block):
    import av

    path = write_av(tmp_path / "x.m4a", tone(48000, 3.0, channels=2), 48000, "aac")
    with av.open(str(path)) as container:  # FFmpeg's own frames, planar float32
        expected = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1).T
    with open_audio(str(path)) as reader:
        blocks = list(reader.blocks(block))
    assert all(b.shape[0] == block for b in blocks[:-1]) and 0 < blocks[-1].shape[0] <= block
    np.testing.assert_array_equal(np.concatenate(blocks), expected)


@pytest.mark.parametrize("ext,channels", [("flac", 2), ("wav", 1)])
def test_ffmpeg_converts_integer_pcm_exactly(tmp_path, ext, channels):
    path = write_audio(tmp_path / f"x.{ext}", tone(44100, 2.0, channels=channels), 44100)
    with open_audio(str(path), backends=("pyav",)) as reader:
        ours = np.concatenate(list(reader.blocks(3000)))
    np.testing.assert_array_equal(ours, sf.read(str(path), dtype="float32", always_2d=True)[0])


def test_wrong_extension_is_decoded_by_content(tmp_path):
    real = write_audio(tmp_path / "x.flac", tone(16000, 0.5), 16000)
    fake = tmp_path / "actually_flac.mp3"
    shutil.copy(real, fake)
    info, samples = decode_all(fake)
    assert info.format.startswith("FLAC") and samples.shape[0] == 8000


def test_blocks_bound_memory_and_cover_the_file(tmp_path):
    path = write_audio(tmp_path / "x.wav", tone(16000, 3.0, channels=2), 16000)
    with open_audio(str(path)) as reader:
        sizes = [b.shape for b in reader.blocks(1000)]
    assert max(s[0] for s in sizes) == 1000 and sum(s[0] for s in sizes) == 48000
    assert all(s[1] == 2 for s in sizes)


@pytest.mark.parametrize(
    "content,kind",
    [(b"", "empty"), (b"hello, this is text", "unsupported"), (b"RIFF\x00\x00\x00\x00WAVE", "unsupported")],
)
def test_broken_files_raise_decode_errors(tmp_path, content, kind):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DecodeError) as info:
        decode_all(path)
    assert info.value.kind == kind and str(info.value)


def test_header_only_wav_decodes_to_nothing(tmp_path):
    path = write_audio(tmp_path / "x.wav", tone(16000, 1.0), 16000)
    path.write_bytes(path.read_bytes()[:44])
    info, samples = decode_all(path)
    assert samples.shape[0] == 0


def test_channel_policies():
    block = np.stack([np.ones(4), 3 * np.ones(4), 5 * np.ones(4)], axis=1).astype(np.float32)
    assert apply_channel_policy(block, "mix").tolist() == [[3.0]] * 4
    assert apply_channel_policy(block, "first").tolist() == [[1.0]] * 4
    assert apply_channel_policy(block, "each").shape == (4, 3)


def test_streaming_resampler_equals_librosa_resample():
    librosa = pytest.importorskip("librosa")
    y = tone(44100, 1.01)[:, 0]
    resampler = Resampler(44100, 16000, 1)
    parts = [resampler.push(y[i : i + 3001, None]) for i in range(0, len(y), 3001)]
    parts.append(resampler.finish(1))
    ours = np.concatenate(parts)[:, 0]
    ref = librosa.resample(y, orig_sr=44100, target_sr=16000)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_truncated_flac_is_an_error_or_partial_audio(tmp_path):
    path = write_audio(tmp_path / "x.flac", tone(16000, 2.0), 16000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        info, samples = decode_all(path)
    except DecodeError as exc:
        assert exc.kind in ("decode", "unsupported")
    else:
        assert 0 < samples.shape[0] < 32000


@pytest.mark.parametrize(
    "fmt,subtype",
    [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
     ("FLAC", "PCM_S8"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("AIFF", "PCM_16"), ("OGG", "VORBIS")],
)
def test_samples_are_bit_for_bit_those_of_soundfile(tmp_path, fmt, subtype):
    # Integer PCM is read as integers and scaled by us: the result must be libsndfile's floats.
    clean = tone(22050, 0.7, channels=2)
    data = np.clip(clean + np.random.default_rng(3).normal(0, 0.3, clean.shape), -1, 1).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), data, 22050, format=fmt, subtype=subtype)
    info, samples = decode_all(path, block=333)
    assert info.format == f"{fmt}/{subtype}"
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, sf.read(str(path), dtype="float32", always_2d=True)[0])
