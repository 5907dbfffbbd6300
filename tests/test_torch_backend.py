"""The torch backend: same rows as numpy on CPU and CUDA, batches equal to single files, CLI.

Every numeric test body runs once per device (`cuda` skips without a GPU). torchaudio is only
a parity oracle here (marker `torchaudio`): those tests skip when it is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from audiokit.extractors import REGISTRY  # noqa: E402 (after a guarded import)
from audiokit.extractors.batched import compute_batch  # noqa: E402 (after a guarded import)
from tests.conftest import NO_CUDA, run_cli, run_json, tone, write_audio  # noqa: E402 (after a guarded import)

HAS_CUDA = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)),
]
TOLERANCE = 1e-4  # of each column's peak |value|, the contract for numpy vs torch

# Several parameter sets per extractor: defaults, small FFTs, HTK, no floor, other windows…
# With power=1 the dB scale is halved, so a floor of 80 dB would reach magnitudes 1e-8 below
# the frame's peak, under float32 FFT rounding (~1e-7): there any two FFTs (scipy's, torch's)
# disagree by whole dB. Those sets use top_db=40, the same depth in power. Without any floor
# (top_db=None) the same holds for bins ~140 dB under the peak, so those sets raise amin.
PARAM_SETS = {
    "mfcc": [
        {},
        {
            "n_fft": 512,
            "hop_length": 160,
            "n_mels": 40,
            "n_mfcc": 13,
            "fmin": 20.0,
            "fmax": 7600.0,
            "sr": 16000,
        },
        {
            "htk": True,
            "mel_norm": None,
            "lifter": 22.0,
            "top_db": None,
            "win_length": 1024,
            "window": "hamming",
        },
        {"center": False, "power": 1.0, "top_db": 40.0, "norm": None, "n_mels": 64},
        {"pad_mode": "edge", "top_db": 40.0, "ref": 10.0, "hop_length": 300},
    ],
    "logmel": [
        {},
        {"n_fft": 400, "hop_length": 160, "n_mels": 80, "sr": 16000, "fmax": 8000.0},
        {"top_db": None, "amin": 1e-5, "htk": True, "fmin": 300.0},
        {"power": 1.0, "top_db": 40.0, "n_mels": 96},
        {"center": False, "win_length": 1500, "window": "blackman", "top_db": 60.0},
    ],
    "spectral": [
        {},
        {"n_fft": 512, "hop_length": 128, "sr": 16000},
        {"roll_percent": 0.95, "bandwidth_p": 1.0, "flatness_power": 1.0, "pad_mode": "edge"},
        {"center": False, "window": "hamming", "win_length": 1000, "zcr_threshold": 0.01},
    ],
}
CASES = [(name, overrides) for name, sets in PARAM_SETS.items() for overrides in sets]
CASE_IDS = [f"{name}-{i}" for name, sets in PARAM_SETS.items() for i in range(len(sets))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def make_extractor(name: str, overrides: dict, backend: str, device: str = "cpu"):
    cls = REGISTRY[name]
    params = dataclasses.replace(cls.Params(), **overrides)
    ext = cls(params, backend=backend, device=device)
    ext.validate()
    return ext


def probe_signal(sr: int, seconds: float, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    """`(channels, n)`: a chirp, a tone with noise, digital silence and a click: every regime
    (loud, quiet, exactly zero) that a floor, a log or a normalisation can trip on."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    y = 0.5 * np.sin(2 * np.pi * (100 + 2000 * t / seconds) * t)
    y[n // 3 : n // 2] = 0.2 * np.sin(
        2 * np.pi * 440 * t[n // 3 : n // 2]
    ) + 0.01 * rng.standard_normal(n // 2 - n // 3)
    y[n // 2 : n // 2 + sr // 4] = 0.0
    y[n // 2 + sr // 8] = 0.9
    return np.stack([y * (1.0 - 0.4 * c) for c in range(channels)]).astype(np.float32)


def stream_columns(ext, signal: np.ndarray, block: int) -> pa.Table:
    """Rows of one file through the extractor's own stream, fed in blocks of `block` samples."""
    stream = ext.start(signal.shape[0], ext.params.sr)
    batches = []
    for start in range(0, signal.shape[1], block):
        batches += stream.push(signal[:, start : start + block])
    batches += stream.finish()
    table = pa.Table.from_batches(
        batches, schema=pa.schema([f for f in ext.schema() if f.name != "file_id"])
    )
    # Each block's rows are channel-major, so blocks interleave channels: sort to compare.
    return table.sort_by([("channel", "ascending"), ("frame", "ascending")])


def as_array(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        return np.asarray(array.flatten()).reshape(len(array), array.type.list_size)
    return np.asarray(array)


ROLLOFF_BIN_HZ = 22050 / 2048  # the default sr / n_fft
ROLLOFF_MAX_FLIPS = 0.01


def assert_close_to_peak(
    reference: np.ndarray, actual: np.ndarray, what: str, *, bin_hz: float | None = None
) -> None:
    """max|Δ| within TOLERANCE of the reference's peak |value|.

    A rolloff (pass `bin_hz`) is an FFT bin's frequency, picked where the cumulative magnitude
    first reaches a threshold: when the two sides of that comparison tie within float32 FFT
    rounding, the two backends pick neighbouring bins. So for rolloff: at most 1 % of frames
    may differ, each by exactly one bin.
    """
    assert reference.shape == actual.shape, what
    if bin_hz is not None:
        delta = np.abs(reference.astype(np.float64) - actual)
        assert np.mean(delta > 0) <= ROLLOFF_MAX_FLIPS if delta.size else True, what
        assert np.all((delta == 0) | (np.abs(delta - bin_hz) < 1e-3 * bin_hz)), what
        return
    peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    worst = float(np.max(np.abs(reference.astype(np.float64) - actual))) if reference.size else 0.0
    assert worst <= TOLERANCE * max(peak, 1e-12), f"{what}: max|Δ| = {worst:.3g}, peak {peak:.3g}"


def rolloff_bin(column: str, params=None) -> float | None:
    if column != "rolloff":
        return None
    return ROLLOFF_BIN_HZ if params is None else params.sr / params.n_fft


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=CASE_IDS)
def test_stream_matches_numpy(device, name, overrides):
    """The extractor objects with backend=torch stream the same rows as with backend=numpy."""
    numpy_ext = make_extractor(name, overrides, "numpy")
    torch_ext = make_extractor(name, overrides, "torch", device)
    signal = probe_signal(numpy_ext.params.sr, 2.5, channels=2)
    expected = stream_columns(numpy_ext, signal, block=7919)
    actual = stream_columns(torch_ext, signal, block=7919)
    assert expected.num_rows == actual.num_rows > 0
    for column in expected.column_names:
        assert_close_to_peak(
            as_array(expected[column]),
            as_array(actual[column]),
            f"{name}.{column}",
            bin_hz=rolloff_bin(column, numpy_ext.params),
        )


@pytest.mark.parametrize("gain", [1e-20, 1e-12, 30.0])
@pytest.mark.parametrize("name", ["mfcc", "logmel", "spectral"])
def test_extreme_levels_match_numpy(device, name, gain):
    """Near-denormal and clipping-loud signals: no underflow or overflow shortcut in the twins
    (real files hold such stretches: fades to -400 dB, float WAVs far above full scale)."""
    numpy_ext = make_extractor(name, {}, "numpy")
    torch_ext = make_extractor(name, {}, "torch", device)
    signal = gain * probe_signal(numpy_ext.params.sr, 1.5)
    expected = stream_columns(numpy_ext, signal, block=10_000)
    (actual,) = compute_batch(torch_ext, [signal])
    for column in numpy_ext.feature_fields():
        want = as_array(expected[column.name])
        assert_close_to_peak(
            want,
            actual[column.name].reshape(want.shape),
            f"{name}.{column.name}",
            bin_hz=rolloff_bin(column.name, numpy_ext.params),
        )


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=CASE_IDS)
def test_batch_matches_numpy(device, name, overrides):
    """Files of different lengths and channel counts in one packed batch (split into several
    device batches) give each file the numpy rows, per-file `top_db` floor included."""
    numpy_ext = make_extractor(name, overrides, "numpy")
    torch_ext = make_extractor(name, overrides, "torch", device)
    sr = numpy_ext.params.sr
    # The third file is quiet: with one floor for the whole batch its rows would differ.
    signals = [
        probe_signal(sr, 1.7, seed=1),
        probe_signal(sr, 0.3, channels=2, seed=2),
        0.01 * probe_signal(sr, 1.1, seed=3),
    ]
    results = compute_batch(torch_ext, signals, max_frames=37)
    for index, (signal, columns) in enumerate(zip(signals, results)):
        expected = stream_columns(numpy_ext, signal, block=10_000)
        channels = signal.shape[0]
        for column in numpy_ext.feature_fields():
            want = as_array(expected[column.name])
            got = columns[column.name]
            assert got.shape[:2] == (channels, want.shape[0] // channels)
            assert_close_to_peak(
                want,
                got.reshape(want.shape),
                f"file {index} {name}.{column.name}",
                bin_hz=rolloff_bin(column.name, numpy_ext.params),
            )


@st.composite
def file_batches(draw):
    lengths = draw(st.lists(st.integers(0, 3000), min_size=1, max_size=6))
    channels = draw(st.lists(st.integers(1, 2), min_size=len(lengths), max_size=len(lengths)))
    seeds = draw(st.lists(st.integers(0, 2**16), min_size=len(lengths), max_size=len(lengths)))
    gains = draw(
        st.lists(st.sampled_from([0.0, 1e-3, 0.5]), min_size=len(lengths), max_size=len(lengths))
    )
    signals = [
        (gain * np.random.default_rng(seed).standard_normal((c, n))).astype(np.float32)
        for n, c, seed, gain in zip(lengths, channels, seeds, gains)
    ]
    return signals, draw(st.integers(1, 40))


SMALL = {"sr": 8000, "n_fft": 256, "hop_length": 64, "n_mels": 24}


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("mfcc", {**SMALL, "n_mfcc": 12}),
        ("logmel", {**SMALL, "top_db": None, "center": False}),
        ("spectral", {"sr": 8000, "n_fft": 256, "hop_length": 100}),
    ],
    ids=["mfcc", "logmel", "spectral"],
)
def test_batch_consistency(device, name, overrides):
    """Property: a batch of files of different lengths gives each file's own result: the same
    frames and shapes exactly, and the same values up to the float32 rounding a matrix product
    of another shape may take (BLAS picks kernels by row count): 1e-6 of the peak, 100 times
    tighter than the numpy/torch contract, and far below what a floor or frame mix-up moves."""
    ext = make_extractor(name, overrides, "torch", device)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(file_batches())
    def check(case):
        signals, max_frames = case
        batched = compute_batch(ext, signals, max_frames=max_frames)
        assert len(batched) == len(signals)
        for signal, columns in zip(signals, batched):
            alone = compute_batch(ext, [signal], max_frames=10_000)[0]
            assert columns.keys() == alone.keys()
            for column in columns:
                assert columns[column].shape == alone[column].shape
                peak = float(np.max(np.abs(alone[column]), initial=0.0))
                np.testing.assert_allclose(
                    columns[column], alone[column], rtol=0, atol=1e-6 * peak, err_msg=column
                )

    check()


def test_empty_and_short_files(device):
    """No samples → no rows; fewer samples than a frame → the frames numpy gives (center pads)."""
    numpy_ext = make_extractor("mfcc", {}, "numpy")
    torch_ext = make_extractor("mfcc", {}, "torch", device)
    signals = [
        np.zeros((1, 0), np.float32),
        tone(22050, 0.01).T.copy(),
        np.zeros((2, 0), np.float32),
    ]
    empty, short, empty2 = compute_batch(torch_ext, signals)
    assert empty["mfcc"].shape == (1, 0, 20) and empty2["mfcc"].shape == (2, 0, 20)
    expected = as_array(stream_columns(numpy_ext, signals[1], block=100)["mfcc"])
    assert_close_to_peak(expected, short["mfcc"][0], "short file")
    assert compute_batch(torch_ext, [signals[0]])[0]["mfcc"].shape == (1, 0, 20)


def test_matrices_come_from_the_numpy_code(device):
    """One source of truth: the torch module holds exactly the numpy extractor's matrices."""
    ext = make_extractor("mfcc", {"lifter": 10.0}, "torch", device)
    module = ext.torch_module()
    assert module.window.device.type == device
    np.testing.assert_array_equal(module.window.cpu().numpy(), ext.window)
    np.testing.assert_array_equal(module.mel_basis_t.cpu().numpy(), ext.mel_basis.T)
    np.testing.assert_array_equal(module.dct_t.cpu().numpy(), ext.dct_t)


# --- the command line ---------------------------------------------------------------------


def read_table(out: Path, table: str) -> pa.Table:
    keys = [("file_id", "ascending")]
    if table != "files":
        keys += [("channel", "ascending"), ("frame", "ascending")]
    return pads.dataset(str(out / table)).to_table().sort_by(keys)


def test_cli_torch_writes_the_numpy_tables(device, tmp_path, corpus):
    """`--backend torch --device cpu|cuda` writes the tables `--backend numpy` writes: same
    files rows, same frame counts, every value within 1e-4 of its column's peak, bad files as rows."""
    (corpus / "b" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_audio(corpus / "c" / "long.flac", tone(22050, 12.0, freq=150.0, seed=5), 22050)
    outputs = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        code, summary, stderr = run_json(
            "extract",
            str(corpus),
            "-o",
            str(out),
            "-x",
            "mfcc,logmel,spectral",
            "--set",
            "audio.channels=each",
            "--backend",
            backend,
            "--device",
            device if backend == "torch" else "cpu",
            "--workers",
            "2",
        )
        assert code == 1, stderr  # the broken file fails, the others do not
        assert summary["failed"] == 1 and summary["processed"] == 6
        outputs[backend] = (out, summary)
    (np_out, np_summary), (t_out, t_summary) = outputs["numpy"], outputs["torch"]
    assert np_summary["tables"] == t_summary["tables"]
    np_files, t_files = read_table(np_out, "files"), read_table(t_out, "files")
    for column in ("file_id", "status", "error_kind", "duration_s", "channels"):
        assert np_files[column].to_pylist() == t_files[column].to_pylist()
    for table in ("mfcc", "logmel", "spectral"):
        expected, actual = read_table(np_out, table), read_table(t_out, table)
        assert expected.num_rows == actual.num_rows > 0
        assert expected.schema.names == actual.schema.names
        for column in ("file_id", "channel", "frame", "time_s"):
            assert expected[column].to_pylist() == actual[column].to_pylist()
        for column in expected.schema.names[4:]:
            assert_close_to_peak(
                as_array(expected[column]),
                as_array(actual[column]),
                f"{table}.{column}",
                bin_hz=rolloff_bin(column),
            )


def torch_hidden_env(tmp_path: Path) -> dict:
    """PYTHONPATH with a `torch` package first in line that fails to import, as if absent."""
    shim = tmp_path / "no_torch"
    (shim / "torch").mkdir(parents=True)
    (shim / "torch" / "__init__.py").write_text(
        "raise ImportError('No module named torch (hidden by test)')\n"
    )
    from tests.conftest import REPO

    return {"PYTHONPATH": f"{shim}:{REPO}"}


def test_cli_torch_backend_without_torch_is_a_clean_usage_error(tmp_path, corpus):
    env = torch_hidden_env(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("extract", str(corpus), "-o", str(out), "--backend", "torch", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "audiokit[torch]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "files").exists()
    # …while the numpy backend does not need torch at all.
    proc = run_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc", env=env)
    assert proc.returncode == 0, proc.stderr


def test_cli_device_cuda_without_gpu_is_a_usage_error(tmp_path, corpus):
    # On a machine with a GPU, the run is shown none.
    proc = run_cli(
        "extract",
        str(corpus),
        "-o",
        str(tmp_path / "out"),
        "--backend",
        "torch",
        "--device",
        "cuda",
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 2
    assert "CUDA" in proc.stderr and "Traceback" not in proc.stderr


# --- torchaudio as an oracle ----------------------------------------------------------------

# Outside CI a missing torchaudio skips; CI runs these in their own environment (.ci/run).
needs_torchaudio = pytest.mark.skipif(
    importlib.util.find_spec("torchaudio") is None,
    reason="torchaudio not installed (optional parity oracle)",
)


def _melkwargs(p) -> dict:
    return {
        "n_fft": p.n_fft,
        "hop_length": p.hop_length,
        "n_mels": p.n_mels,
        "f_min": p.fmin,
        "f_max": p.fmax,
        "center": p.center,
        "pad_mode": "constant",
        "norm": "slaney",
        "mel_scale": "slaney",
        "power": 2.0,
    }


@pytest.mark.torchaudio
@needs_torchaudio
def test_logmel_matches_torchaudio(device):
    import torchaudio

    ext = make_extractor(
        "logmel", {"sr": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64}, "torch", device
    )
    p = ext.params
    signal = probe_signal(p.sr, 2.0)
    ours = compute_batch(ext, [signal])[0]["logmel"][0]
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=p.sr, **_melkwargs(p)).to(device)
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=p.top_db).to(device)
    theirs = to_db(mel(torch.from_numpy(signal[0]).to(device))).T.cpu().numpy()
    assert_close_to_peak(theirs, ours, "logmel vs torchaudio")


@pytest.mark.torchaudio
@needs_torchaudio
def test_mfcc_matches_torchaudio(device):
    import torchaudio

    ext = make_extractor(
        "mfcc",
        {"sr": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 40, "n_mfcc": 13},
        "torch",
        device,
    )
    p = ext.params
    signal = probe_signal(p.sr, 2.0)
    ours = compute_batch(ext, [signal])[0]["mfcc"][0]
    mfcc = torchaudio.transforms.MFCC(
        sample_rate=p.sr,
        n_mfcc=p.n_mfcc,
        dct_type=2,
        norm="ortho",
        log_mels=False,
        melkwargs=_melkwargs(p),
    ).to(device)
    theirs = mfcc(torch.from_numpy(signal[0]).to(device)).T.cpu().numpy()
    assert_close_to_peak(theirs, ours, "mfcc vs torchaudio")


def test_pipeline_batches_across_files(tmp_path, corpus, monkeypatch):
    """The torch engine computes decoded files together (one device call for many files), and
    a file that cannot be decoded is still its own error row."""
    import audiokit
    from audiokit.extractors import batched

    (corpus / "b" / "broken.flac").write_bytes(b"fLaC-not-really")
    calls: list[int] = []
    real = batched.compute_batch

    def spy(extractor, signals, **kwargs):
        calls.append(len(signals))
        return real(extractor, signals, **kwargs)

    monkeypatch.setattr(batched, "compute_batch", spy)
    summary = audiokit.extract(
        [str(corpus)],
        str(tmp_path / "out"),
        extractors=["mfcc"],
        backend="torch",
        device="cpu",
        workers=2,
    )
    assert summary.processed == 5 and summary.failed == 1
    assert summary.errors[0]["path"].endswith("broken.flac")
    assert max(calls) >= 2, calls  # several files in one call
    assert summary.tables["mfcc"] == read_table(tmp_path / "out", "mfcc").num_rows > 0


def test_killed_torch_runs_resume_to_the_numpy_rows(tmp_path):
    """SIGKILL a torch run at chosen moments (files decoded and staged, none committed; in the
    middle of a commit), each checked to have landed there; resume: every frame exactly once,
    equal to a clean numpy run."""
    import os
    import random
    import subprocess
    import sys

    from tests.conftest import REPO, STAGE_ON_DISK, kill_on, parts, runs_logged, staged_files

    rng = random.Random(3)
    corpus = tmp_path / "corpus"
    for i in range(10):
        sr = rng.choice([16000, 22050, 44100])
        data = tone(sr, rng.uniform(0.5, 3.0), channels=rng.choice([1, 2]), seed=i)
        write_audio(corpus / f"f{i:02d}.{rng.choice(['wav', 'flac'])}", data, sr)
    clean = tmp_path / "clean"
    code, _, stderr = run_json("extract", str(corpus), "-o", str(clean), "-x", "mfcc,spectral")
    assert code == 0, stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), **STAGE_ON_DISK}  # staged files: the kill points

    def killed_run(out: Path, event) -> bool:
        """Start a torch run on `out`, SIGKILL it when `event()` holds: True if that came before
        the run's end."""
        runs_before = runs_logged(out)
        proc = subprocess.Popen(
            [sys.executable, "-m", "audiokit", "extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral",
             "--backend", "torch", "--device", "cpu", "--quiet"], env=env,
        )
        return kill_on(proc, event) and runs_logged(out) == runs_before

    # While files are decoded and staged (nothing committed yet), twice on one output…
    staged = tmp_path / "staged"
    assert killed_run(staged, lambda: staged_files(staged) >= 3), "3 files staged: the run ended first"
    assert killed_run(staged, lambda: staged_files(staged) >= 1), "1 file staged: the run ended first"
    # …and in the middle of a commit (feature parts renamed, the files part not yet), which is
    # this run's last milliseconds: tried on fresh outputs until a kill lands there.
    for attempt in range(3):
        mid_commit = tmp_path / f"commit{attempt}"
        if killed_run(mid_commit, lambda out=mid_commit: parts(out, "spectral") > parts(out, "files")):
            break
    else:
        raise AssertionError("no kill landed between a commit's renames in 3 runs")
    for out in (staged, mid_commit):
        committed = ds_rows(out / "files")
        assert committed < 10  # the kill came before every file was committed
        code, summary, stderr = run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral",
                                         "--backend", "torch", "--device", "cpu")
        assert code == 0 and summary["skipped"] == committed, stderr
        for table in ("mfcc", "spectral"):
            expected, actual = read_table(clean, table), read_table(out, table)
            for column in ("file_id", "channel", "frame"):
                assert expected[column].to_pylist() == actual[column].to_pylist(), table
            for column in expected.schema.names[4:]:
                assert_close_to_peak(
                    as_array(expected[column]),
                    as_array(actual[column]),
                    column,
                    bin_hz=rolloff_bin(column),
                )
        files = read_table(out, "files")
        assert files.num_rows == 10 and set(files["status"].to_pylist()) == {"ok"}


def ds_rows(directory: Path) -> int:
    """Rows of the committed parts (a killed run's `*.tmp` part is not one)."""
    committed = sorted(str(p) for p in directory.glob("part-*.parquet"))
    return pads.dataset(committed).count_rows() if committed else 0


def test_files_longer_than_the_device_cap_are_computed_in_their_worker(tmp_path, monkeypatch):
    """A file over `run.max_device_file_s` is not shipped whole to the device process; its
    worker computes it and the rows still equal the numpy backend's."""
    corpus = tmp_path / "corpus"
    write_audio(corpus / "long.flac", tone(22050, 6.0, freq=220.0, seed=3), 22050)
    write_audio(corpus / "short.wav", tone(16000, 0.5, seed=4), 16000)
    tables = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        code, summary, stderr = run_json(
            "extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", "--backend", backend,
            "--device", "cpu", "--set", "run.max_device_file_s=2", "--workers", "1",
        )
        assert code == 0 and summary["processed"] == 2, stderr
        tables[backend] = {name: read_table(out, name) for name in ("files", "mfcc", "spectral")}
    assert tables["numpy"]["files"]["status"].to_pylist() == ["ok", "ok"]
    assert tables["torch"]["files"]["error_kind"].to_pylist() == [None, None]
    for name in ("mfcc", "spectral"):
        expected, actual = tables["numpy"][name], tables["torch"][name]
        assert expected.num_rows == actual.num_rows > 250
        for column in ("file_id", "channel", "frame", "time_s"):
            assert expected[column].to_pylist() == actual[column].to_pylist()
        for column in expected.schema.names[4:]:
            assert_close_to_peak(as_array(expected[column]), as_array(actual[column]), column)
    # The long file went through its worker's numpy path: bit-identical, unlike device rows.
    long_id = tables["numpy"]["files"].filter(pc.equal(tables["numpy"]["files"]["relpath"], "long.flac"))["file_id"][0]

    def mfcc_of(backend, file_id):
        table = tables[backend]["mfcc"]
        return as_array(table.filter(pc.equal(table["file_id"], file_id))["mfcc"])

    assert np.array_equal(mfcc_of("numpy", long_id), mfcc_of("torch", long_id))
    # Which path each file took, seen where it runs: the device batches get the short file only.
    import audiokit
    from audiokit.extractors import batched

    device_signals: list[tuple[str, int]] = []
    real = batched.compute_batch

    def spy(extractor, signals, **kwargs):
        device_signals.extend((extractor.name, signal.shape[-1]) for signal in signals)
        return real(extractor, signals, **kwargs)

    monkeypatch.setattr(batched, "compute_batch", spy)
    summary = audiokit.extract(
        [str(corpus)], str(tmp_path / "spied"), extractors=["mfcc", "spectral"], backend="torch",
        device="cpu", workers=1, overrides=["run.max_device_file_s=2"],
    )
    assert summary.processed == 2 and summary.failed == 0
    short_samples = int(0.5 * 22050)  # short.wav resampled to the extractors' 22.05 kHz
    assert sorted(device_signals) == [("mfcc", short_samples), ("spectral", short_samples)]
    spied = read_table(tmp_path / "spied", "mfcc")
    assert spied["file_id"].to_pylist() == tables["torch"]["mfcc"]["file_id"].to_pylist()
