"""The DSP core and the frame extractors against librosa (the oracle), and blocks = whole."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

librosa = pytest.importorskip("librosa")

from audiokit.dsp import (  # noqa: E402
    StreamFramer,
    dct_matrix,
    frame,
    mel_filterbank,
    n_frames,
    power_to_db,
)
from audiokit.extractors import REGISTRY  # noqa: E402


def signal(sr: int, seconds: float, seed: int = 0, silence_s: float = 0.2) -> np.ndarray:
    """A chord with noise, digital silence at the start (so the top_db floor matters)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 445.0, 1870.0)) + 0.03 * rng.standard_normal(t.size)
    y[: int(silence_s * sr)] = 0.0
    return y.astype(np.float32)


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def run_extractor(name: str, y: np.ndarray, sr: int, blocks=None, channels: int = 1, **params) -> pa.Table:
    """Feed `y` ((n,) or (channels, n)) through extractor `name` in the given block sizes."""
    cls = REGISTRY[name]
    ext = cls(cls.Params(sr=sr, **params))
    ext.validate()
    y2 = y.reshape(channels, -1)
    stream = ext.start(channels, sr)
    batches, start = [], 0
    for size in blocks or [y2.shape[1]]:
        batches += stream.push(y2[:, start : start + size])
        start += size
    batches += stream.push(y2[:, start:])
    batches += stream.finish()
    fields = [f for f in ext.schema() if f.name != "file_id"]
    return pa.Table.from_batches(batches, schema=pa.schema(fields))


def vectors(table: pa.Table, column: str) -> np.ndarray:
    return np.stack(table.column(column).to_numpy(zero_copy_only=False))


MEL_SETTINGS = [
    {},
    {"n_mfcc": 40, "n_fft": 512, "hop_length": 160, "n_mels": 64, "fmin": 20.0, "fmax": 7600.0},
    {"htk": True, "lifter": 22.0, "win_length": 1024, "mel_norm": None},
    {"n_fft": 1024, "hop_length": 256, "center": False, "n_mels": 40, "n_mfcc": 13},
    {"n_fft": 2048, "hop_length": 300, "pad_mode": "edge", "top_db": None, "norm": None},
]


@pytest.mark.parametrize("settings_", MEL_SETTINGS)
@pytest.mark.parametrize("sr", [8000, 16000, 22050])
def test_mfcc_matches_librosa(settings_, sr):
    if settings_.get("fmax", 0) > sr / 2:
        # librosa warns and leaves mel filters empty; audiokit refuses the setting instead.
        cls = REGISTRY["mfcc"]
        with pytest.raises(ValueError, match="fmax <= sr/2"):
            cls(cls.Params(sr=sr, **settings_)).validate()
        return
    y = signal(sr, 2.3)
    ours = run_extractor("mfcc", y, sr, **settings_)
    p = dict(settings_)
    mel_norm = p.pop("mel_norm", "slaney")
    dct_norm = p.pop("norm", "ortho")
    top_db = p.pop("top_db", 80.0)
    n_mfcc = p.pop("n_mfcc", 20)
    lifter = p.pop("lifter", 0.0)
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, norm=mel_norm, **p), top_db=top_db)
    ref = librosa.feature.mfcc(S=S, n_mfcc=n_mfcc, norm=dct_norm, lifter=lifter).T
    assert rel_err(vectors(ours, "mfcc"), ref) <= 1e-4
    hop = p.get("hop_length", 512)
    assert ours.column("frame").to_pylist() == list(range(ref.shape[0]))
    np.testing.assert_allclose(ours.column("time_s").to_numpy(), np.arange(ref.shape[0]) * hop / sr)


def test_mfcc_default_call_matches_librosa_mfcc():
    y = signal(22050, 3.0, seed=3)
    ours = vectors(run_extractor("mfcc", y, 22050), "mfcc")
    assert rel_err(ours, librosa.feature.mfcc(y=y, sr=22050).T) <= 1e-4


@pytest.mark.parametrize("settings_", MEL_SETTINGS[:3])
def test_logmel_matches_librosa(settings_):
    sr = 16000
    y = signal(sr, 1.7, seed=2)
    # logmel's `norm` is the filterbank's (librosa.feature.melspectrogram); mfcc calls it mel_norm.
    p = {("norm" if k == "mel_norm" else k): v for k, v in settings_.items() if k not in ("n_mfcc", "lifter", "norm")}
    ours = vectors(run_extractor("logmel", y, sr, **p), "logmel")
    norm = p.pop("norm", "slaney")
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, norm=norm, **p), top_db=80.0).T
    assert rel_err(ours, ref) <= 1e-4


@pytest.mark.parametrize(
    "settings_",
    [{}, {"n_fft": 512, "hop_length": 128}, {"n_fft": 1024, "hop_length": 256, "win_length": 800, "roll_percent": 0.5}],
)
def test_spectral_matches_librosa(settings_):
    sr = 22050
    y = signal(sr, 2.0, seed=4)
    ours = run_extractor("spectral", y, sr, **settings_)
    n_fft = settings_.get("n_fft", 2048)
    hop = settings_.get("hop_length", 512)
    win = settings_.get("win_length")
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win))
    refs = {
        "centroid": librosa.feature.spectral_centroid(S=S, sr=sr),
        "bandwidth": librosa.feature.spectral_bandwidth(S=S, sr=sr),
        "rolloff": librosa.feature.spectral_rolloff(S=S, sr=sr, roll_percent=settings_.get("roll_percent", 0.85)),
        "flatness": librosa.feature.spectral_flatness(S=S),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        "rms": librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop),
    }
    for name, ref in refs.items():
        assert rel_err(ours.column(name).to_numpy(), ref[0]) <= 1e-4, name


def test_mel_filterbank_and_dct_match_references():
    import scipy.fft

    for kwargs in [dict(sr=22050, n_fft=2048), dict(sr=16000, n_fft=512, n_mels=64, fmin=20.0, fmax=7600.0, htk=True)]:
        np.testing.assert_allclose(mel_filterbank(**kwargs), librosa.filters.mel(**kwargs), rtol=1e-5, atol=1e-8)
    x = np.random.default_rng(0).standard_normal((7, 128)).astype(np.float32)
    np.testing.assert_allclose(x @ dct_matrix(20, 128).T, scipy.fft.dct(x, type=2, norm="ortho")[:, :20], atol=1e-4)


def test_logmel_with_empty_filters_matches_librosa():
    # 128 mel bands over a 128-point FFT at 8 kHz: 29 filters fall between FFT bins and are
    # all zero (librosa warns); they sit at the dB floor, as in librosa.
    sr, y = 8000, signal(8000, 1.5, seed=7)
    with pytest.warns(UserWarning, match="Empty filters"):
        ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=128, hop_length=64), top_db=80.0).T
    ours = vectors(run_extractor("logmel", y, sr, n_fft=128, hop_length=64), "logmel")
    assert np.all(ours[:, 0] == ours.min())
    assert rel_err(ours, ref) <= 1e-4


def test_banded_filterbank_equals_dense_product():
    from audiokit.dsp.mel import BandedFilterbank

    basis = mel_filterbank(sr=16000, n_fft=512, n_mels=80, fmin=300.0, fmax=6000.0)
    basis[16:32] = 0.0  # a whole group of empty filters
    S = np.random.default_rng(2).random((2, 300, 257), dtype=np.float32)
    for group in (1, 7, 16, 80):
        np.testing.assert_allclose(BandedFilterbank(basis, group)(S), S @ basis.T, rtol=1e-5, atol=1e-6)


def test_a_row_of_the_filterbank_or_the_dct_does_not_depend_on_its_block():
    # BLAS rounds a row by how many rows share the call (OpenBLAS's edge kernels), which broke
    # "blocks give the rows of the whole file" on some processors; every row is its own product.
    from audiokit.dsp.framing import rowwise_matmul
    from audiokit.dsp.mel import BandedFilterbank

    bank = BandedFilterbank(mel_filterbank(sr=22050, n_fft=2048, n_mels=128))
    dct_t = np.ascontiguousarray(dct_matrix(20, 128).T)
    S = np.random.default_rng(3).random((2, 700, 1025), dtype=np.float32)
    whole_mel, whole_dct = bank(S), rowwise_matmul(np.log(bank(S) + 1e-6), dct_t)
    np.testing.assert_allclose(whole_dct, np.log(bank(S) + 1e-6) @ dct_t, rtol=1e-5, atol=1e-4)
    for start, stop in [(0, 1), (3, 20), (17, 400), (333, 700), (699, 700)]:
        block = S[:, start:stop]
        assert np.array_equal(bank(block), whole_mel[:, start:stop])
        assert np.array_equal(rowwise_matmul(np.log(bank(block) + 1e-6), dct_t), whole_dct[:, start:stop])


def test_power_to_db_floor_matches_librosa():
    S = np.abs(np.random.default_rng(1).standard_normal((5, 50))) ** 4
    np.testing.assert_allclose(power_to_db(S, top_db=40.0), librosa.power_to_db(S, top_db=40.0), atol=1e-5)


def test_stereo_channels_are_independent():
    sr = 16000
    # 6 s: each channel's 188 frames span two of the spectrum's FFT chunks (128 frames).
    left, right = signal(sr, 6.0, seed=5), signal(sr, 6.0, seed=6) * 0.5
    both = run_extractor("mfcc", np.stack([left, right]), sr, channels=2, blocks=[5000, 50000])
    both = both.sort_by([("channel", "ascending"), ("frame", "ascending")])
    assert both.column("channel").to_pylist() == [0] * (both.num_rows // 2) + [1] * (both.num_rows // 2)
    ref = librosa.feature.mfcc(y=np.stack([left, right]), sr=sr)  # (2, 20, T)
    ours = vectors(both, "mfcc").reshape(2, -1, 20)
    # librosa's top_db floor for a multichannel call is shared across channels; so is ours.
    assert rel_err(ours, ref.transpose(0, 2, 1)) <= 1e-4


# -- blocks = whole ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 5000),
    frame_length=st.sampled_from([16, 64, 255, 256]),
    hop=st.integers(1, 300),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "edge"]),
    cuts=st.lists(st.integers(0, 5000), max_size=6),
)
def test_stream_framer_equals_whole_signal(n, frame_length, hop, center, pad_mode, cuts):
    y = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    framer = StreamFramer(frame_length, hop, center=center, pad_mode=pad_mode)
    pieces = []
    bounds = sorted({0, n, *[c for c in cuts if c <= n]})
    for a, b in zip(bounds[:-1], bounds[1:]):
        pieces.append(frame(framer.push(y[:, a:b]), frame_length, hop))
    pieces.append(frame(framer.finish(), frame_length, hop))
    got = np.concatenate(pieces, axis=1) if pieces else np.zeros((2, 0, frame_length))
    if n == 0:
        assert got.shape[1] == 0
        return
    padded = np.pad(y, ((0, 0), (frame_length // 2,) * 2), mode=pad_mode) if center else y
    expected = frame(padded, frame_length, hop)
    assert got.shape[1] == n_frames(n, frame_length, hop, center) == expected.shape[1]
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.floats(0.05, 3.0),
    sr=st.sampled_from([8000, 16000, 22050, 44100]),
    block=st.integers(1, 40000),
    name=st.sampled_from(["mfcc", "logmel", "spectral"]),
)
def test_extractor_blocks_equal_whole(seconds, sr, block, name):
    y = signal(sr, seconds, seed=int(seconds * 1000), silence_s=min(0.1, seconds / 3))
    whole = run_extractor(name, y, sr)
    blocks = [block] * (len(y) // block + 1)
    streamed = run_extractor(name, y, sr, blocks=blocks)
    assert streamed.num_rows == whole.num_rows == n_frames(len(y), 2048, 512)
    assert streamed.column("frame").equals(whole.column("frame"))
    assert streamed.column("time_s").equals(whole.column("time_s"))
    for column in whole.column_names[3:]:
        a = whole.column(column).combine_chunks().flatten() if name != "spectral" else whole.column(column)
        b = streamed.column(column).combine_chunks().flatten() if name != "spectral" else streamed.column(column)
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
