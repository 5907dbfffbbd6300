"""The `embeddings` extractor, its model registry and checkpoint downloads.

Real components throughout: the GE2E weights from the installed resemblyzer package, torch,
onnxruntime, a real HTTP server on 127.0.0.1 for downloads. Tests skip when their package is
missing. Parity with the original implementations is scripts/check_embedding_parity.py.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from conftest import NO_SHARED_DATA, REPO, run_cli, run_json, tone, write_audio

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_RESEMBLYZER = importlib.util.find_spec("resemblyzer") is not None
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
needs_ge2e = pytest.mark.skipif(not (HAS_TORCH and HAS_RESEMBLYZER), reason="torch or resemblyzer not installed")
needs_onnx = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed")

SPEECH = next(
    (p for p in (REPO.parent / "shared" / "data" / "lhotse", REPO.parents[1] / "shared" / "data" / "lhotse") if p.is_dir()),
    None,
)


def read_table(out: Path, table: str = "embeddings") -> pa.Table:
    return ds.dataset(str(out / table), format="parquet").to_table()


def rows_by_file(out: Path) -> dict[str, list[dict]]:
    files = {r["file_id"]: Path(r["relpath"]).name for r in read_table(out, "files").to_pylist()}
    result: dict[str, list[dict]] = {}
    for row in read_table(out).to_pylist():
        result.setdefault(files[row["file_id"]], []).append(row)
    for rows in result.values():
        rows.sort(key=lambda r: (r["channel"], r["start_s"]))
    return result


def stream_rows(extractor, samples: np.ndarray, block: int) -> list[dict]:
    """Feed `(channels, n)` samples in blocks through an extractor stream; rows as dicts."""
    stream = extractor.start(samples.shape[0], extractor.sample_rate)
    batches = []
    for i in range(0, samples.shape[1], block):
        batches += stream.push(samples[:, i : i + block])
    batches += stream.finish()
    return pa.Table.from_batches(batches).to_pylist() if batches else []


def build(overrides: list[str]):
    from audiokit.config import load_config
    from audiokit.extractors import REGISTRY

    config = load_config(extractors=["embeddings"], overrides=overrides)
    return REGISTRY["embeddings"](config.params["embeddings"])


# --------------------------------------------------------------------------------------------
# GE2E through the command line


@pytest.fixture
def speech_dir(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    write_audio(root / "tone.wav", tone(44100, 2.5, channels=2), 44100)
    # Always something voice-like besides the tone, with or without ../shared/data.
    from scripts.make_embedding_reference import SAMPLE_RATE, reference_signal

    write_audio(root / "voiced.wav", reference_signal()[:, None], SAMPLE_RATE)
    if SPEECH is not None:
        import shutil

        shutil.copy(SPEECH / "LJ002-0020.wav", root / "speech.wav")
    return root


@needs_ge2e
def test_schema_and_two_runs_bit_identical(speech_dir: Path, tmp_path: Path):
    code, summary, err = run_json("extract", str(speech_dir), "-o", str(tmp_path / "a"), "-x", "embeddings", "--workers", "2")
    assert code == 0, err
    code, _, err = run_json("extract", str(speech_dir), "-o", str(tmp_path / "b"), "-x", "embeddings", "--workers", "1")
    assert code == 0, err
    table = read_table(tmp_path / "a")
    expected = pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("channel", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), 256)),
        ]
    )
    assert table.schema.remove_metadata().equals(expected)
    assert summary["tables"]["embeddings"] == table.num_rows
    a, b = rows_by_file(tmp_path / "a"), rows_by_file(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        assert [(r["start_s"], r["end_s"]) for r in a[name]] == [(r["start_s"], r["end_s"]) for r in b[name]]
        va = np.array([r["embedding"] for r in a[name]], dtype=np.float32)
        vb = np.array([r["embedding"] for r in b[name]], dtype=np.float32)
        assert va.tobytes() == vb.tobytes(), name  # bit-identical across runs and worker counts
        assert {r["model"] for r in a[name]} == {"ge2e"}
        np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, rtol=1e-5)
    # 2.5 s at window 1.6 / hop 0.8: windows at 0, 0.8, 1.6; the last padded, its true end kept.
    assert [(r["start_s"], r["end_s"]) for r in a["tone.wav"]] == [(0.0, 1.6), (0.8, 2.4), (1.6, 2.5)]


@needs_ge2e
def test_speech_embeddings_separate_speakers_from_tones(speech_dir: Path, tmp_path: Path):
    if SPEECH is None:
        pytest.skip(NO_SHARED_DATA)
    import shutil

    shutil.copy(SPEECH / "libri-1088-134315-0000.wav", speech_dir / "speech2.wav")
    code, _, err = run_json(
        "extract", str(speech_dir), "-o", str(tmp_path / "o"), "-x", "embeddings", "--set", "embeddings.pooling=mean", "--workers", "1"
    )
    assert code == 0, err
    rows = rows_by_file(tmp_path / "o")
    vec = {k: np.asarray(v[0]["embedding"]) / np.linalg.norm(v[0]["embedding"]) for k, v in rows.items()}
    # Two different speakers are still closer to each other than either is to a sine tone.
    assert vec["speech.wav"] @ vec["speech2.wav"] > vec["speech.wav"] @ vec["tone.wav"]
    assert vec["speech.wav"] @ vec["speech2.wav"] > vec["speech2.wav"] @ vec["tone.wav"]


# The original GE2E (resemblyzer, official weights) on a generated signal, computed once by
# `python scripts/make_embedding_reference.py`: each window's embedding projected on 8 fixed
# random directions. Ours matched within 1e-7; the numbers are printed to 5 decimals.
GE2E_REFERENCE = {  # window start (s) -> projections, from scripts/make_embedding_reference.py
    0.0: [0.07105, 0.02509, 0.02000, -0.02283, 0.01633, -0.14055, 0.06367, -0.05972],
    0.8: [0.07736, 0.04981, 0.01594, -0.01385, 0.00635, -0.14064, 0.06593, -0.05897],
    1.6: [0.06338, 0.03923, 0.02399, -0.02651, 0.00442, -0.13724, 0.06175, -0.06018],
    2.4: [0.07254, 0.03037, 0.00630, -0.03281, 0.00198, -0.14086, 0.06600, -0.05800],
}


@needs_ge2e
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ge2e_matches_the_stored_reference_of_the_original_model(tmp_path: Path, backend: str):
    """Through the CLI, front end included: a changed mel, window, framing or network fails."""
    import soundfile as sf

    from scripts.make_embedding_reference import SAMPLE_RATE, projection, reference_signal

    (tmp_path / "in").mkdir()  # float samples at the model's rate: the reference's very samples
    sf.write(str(tmp_path / "in" / "voiced.wav"), reference_signal(), SAMPLE_RATE, subtype="FLOAT")
    code, _, err = run_json(
        "extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings", "--backend", backend,
        "--device", "cpu", "--set", "embeddings.window_s=1.6", "--set", "embeddings.hop_s=0.8",
    )
    assert code == 0, err
    rows = {round(r["start_s"], 1): r for r in rows_by_file(tmp_path / "out")["voiced.wav"]}
    for start, expected in GE2E_REFERENCE.items():
        got = np.asarray(rows[start]["embedding"], dtype=np.float64) @ projection()
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4, err_msg=f"window at {start} s")


@needs_ge2e
def test_pooling_mean_and_max_match_the_window_rows(tmp_path: Path):
    root = tmp_path / "in"
    write_audio(root / "st.wav", tone(16000, 4.3, channels=2, freq=220.0), 16000)
    outs = {}
    for pooling in ("none", "mean", "max"):
        code, _, err = run_json(
            "extract", str(root), "-o", str(tmp_path / pooling), "-x", "embeddings", "--workers", "1",
            "--set", f"embeddings.pooling={pooling}", "--set", "audio.channels=each",
        )
        assert code == 0, err
        outs[pooling] = rows_by_file(tmp_path / pooling)["st.wav"]
    windows = outs["none"]
    assert {r["channel"] for r in windows} == {0, 1}
    for pooling, reduce in (("mean", np.mean), ("max", np.max)):
        pooled = outs[pooling]
        assert [(r["channel"], r["start_s"], r["end_s"]) for r in pooled] == [(0, 0.0, 4.3), (1, 0.0, 4.3)]
        for row in pooled:
            per_window = np.array([w["embedding"] for w in windows if w["channel"] == row["channel"]])
            np.testing.assert_allclose(row["embedding"], reduce(per_window, axis=0), rtol=1e-6, atol=1e-7)


@needs_ge2e
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bad_inputs_give_rows_not_crashes(tmp_path: Path, backend: str):
    root = tmp_path / "in"
    write_audio(root / "silence.wav", np.zeros((32000, 1), dtype=np.float32), 16000)
    write_audio(root / "short.wav", tone(16000, 0.1), 16000)
    write_audio(root / "narrow.wav", tone(8000, 2.0), 8000)
    write_audio(root / "six.wav", tone(48000, 1.0, channels=6), 48000)
    (root / "empty.wav").write_bytes(b"")
    for policy, six_channels in (("mix", {0}), ("each", set(range(6)))):
        out = tmp_path / policy
        code, _, err = run_json(
            "extract", str(root), "-o", str(out), "-x", "embeddings", "--workers", "2", "--set", f"audio.channels={policy}",
            "--backend", backend, "--device", "cpu", "--set", "embeddings.device=cpu",
        )
        assert code == 1, err  # only the empty file fails, as a row of its own
        files = {Path(r["relpath"]).name: r for r in read_table(out, "files").to_pylist()}
        assert files["empty.wav"]["status"] == "error"
        assert all(files[n]["status"] == "ok" for n in ("silence.wav", "short.wav", "narrow.wav", "six.wav"))
        rows = rows_by_file(out)
        assert [(r["start_s"], r["end_s"]) for r in rows["short.wav"]] == [(0.0, 0.1)]
        assert {r["channel"] for r in rows["six.wav"]} == six_channels
        for name in ("silence.wav", "narrow.wav"):
            vectors = np.array([r["embedding"] for r in rows[name]])
            assert np.isfinite(vectors).all(), name
        assert np.all(np.array([r["embedding"] for r in rows["silence.wav"]]) >= 0)


# --------------------------------------------------------------------------------------------
# Windows and batching, in process


@needs_ge2e
def test_block_size_and_batch_size_do_not_change_rows():
    rng = np.random.default_rng(3)
    samples = (0.1 * rng.standard_normal((1, 16000 * 7 + 123))).astype(np.float32)
    ext = build(["embeddings.batch_size=4", "embeddings.device=cpu"])
    whole = stream_rows(ext, samples, samples.shape[1])
    blocks = stream_rows(ext, samples, 1234)
    assert [(r["start_s"], r["end_s"]) for r in whole] == [(r["start_s"], r["end_s"]) for r in blocks]
    # Same windows, same batches; only FFT/BLAS rounding over differently sized blocks differs.
    np.testing.assert_allclose([r["embedding"] for r in blocks], [r["embedding"] for r in whole], atol=1e-6)
    other = stream_rows(build(["embeddings.batch_size=1", "embeddings.device=cpu"]), samples, 5000)
    np.testing.assert_allclose([r["embedding"] for r in other], [r["embedding"] for r in whole], atol=1e-5)


@needs_ge2e
def test_long_file_memory_is_bounded():
    """A long recording streams: the held samples and pending windows never grow with it."""
    ext = build(["embeddings.window_s=1.6", "embeddings.hop_s=1.6", "embeddings.batch_size=8", "embeddings.device=cpu"])
    stream = ext.start(1, 16000)
    rng = np.random.default_rng(0)
    block = 16000 * 10
    rows, peak_units, peak_pending = 0, 0, 0
    for _ in range(36):  # 6 minutes
        batches = stream.push((0.05 * rng.standard_normal((1, block))).astype(np.float32))
        rows += sum(b.num_rows for b in batches)
        peak_units = max(peak_units, stream.windower.buffer.shape[1])
        peak_pending = max(peak_pending, len(stream.pending))
    rows += sum(b.num_rows for b in stream.finish())
    assert rows == 225  # 360 s / 1.6 s
    assert peak_units <= 160 + 1  # less than one window of mel frames is ever held
    assert peak_pending < 8


# --------------------------------------------------------------------------------------------
# `--backend torch`: windows of many files share the model's forward passes


@needs_ge2e
def test_torch_backend_matches_numpy_and_repeats_bit_for_bit(tmp_path: Path):
    corpus = tmp_path / "in"
    for i, seconds in enumerate((0.1, 0.7, 1.6, 2.5, 4.1, 9.3)):
        rate = (8000, 16000, 22050, 44100)[i % 4]
        write_audio(corpus / f"f{i}.flac", tone(rate, seconds, freq=150.0 + 40 * i, channels=1 + i % 2, seed=i), rate)
    tables = {}
    for name, options in {
        "numpy": ["--workers", "1"],
        "torch2": ["--backend", "torch", "--device", "cpu", "--workers", "2"],
        "torch1": ["--backend", "torch", "--device", "cpu", "--workers", "1"],
        # Windows worth more than twice the samples of 0.5 s: embedded in their worker instead.
        "capped": ["--backend", "torch", "--device", "cpu", "--workers", "1", "--set", "run.max_device_file_s=0.5"],
    }.items():
        code, summary, err = run_json("extract", str(corpus), "-o", str(tmp_path / name), "-x", "embeddings",
                                      "--set", "embeddings.device=cpu", *options)
        assert code == 0 and summary["processed"] == 6, err
        tables[name] = rows_by_file(tmp_path / name)
    for file, rows in tables["numpy"].items():
        spans = [(r["channel"], r["start_s"], r["end_s"]) for r in rows]
        vectors = {name: np.array([r["embedding"] for r in t[file]], dtype=np.float32) for name, t in tables.items()}
        for name, t in tables.items():
            assert [(r["channel"], r["start_s"], r["end_s"]) for r in t[file]] == spans, (name, file)
            np.testing.assert_allclose(vectors[name], vectors["numpy"], atol=1e-5, err_msg=f"{name} {file}")
        # Each window's vector does not depend on which files shared its batch.
        assert vectors["torch1"].tobytes() == vectors["torch2"].tobytes(), file
        # The longest files took the per-file path in the worker, as the numpy backend does.
        if file in ("f4.flac", "f5.flac"):
            assert vectors["capped"].tobytes() == vectors["numpy"].tobytes(), file
    # Stereo is mixed down (the default channel policy); 1.6 s windows every 0.8 s.
    assert [len(tables["numpy"][f"f{i}.flac"]) for i in range(6)] == [1, 1, 1, 3, 5, 11]


@needs_torch
def test_torch_backend_packs_windows_of_many_files_into_one_batch(tmp_path: Path):
    import torch

    class _BatchProbe(torch.nn.Module):
        """Per window: its mean, the batch size and how many windows of the batch hold audio."""

        def forward(self, x):
            filled = (x.abs().amax(dim=1) > 0).sum().float()
            size = torch.full((x.shape[0],), float(x.shape[0]))
            return torch.stack([x.mean(dim=1), size, filled.expand(x.shape[0])], dim=1)

    torch.jit.script(_BatchProbe()).save(str(tmp_path / "probe.pt"))
    card = write_card(tmp_path / "probe.toml", "probe.pt", name="probe", dim=3)
    for i in range(10):  # 0.3 s each: one window per file
        write_audio(tmp_path / "in" / f"c{i}.wav", tone(8000, 0.3, freq=100.0 + 10 * i, seed=i), 8000)
    probes = {}
    for backend in ("numpy", "torch"):
        code, _, err = run_json("extract", str(tmp_path / "in"), "-o", str(tmp_path / backend), "-x", "embeddings",
                                "--set", f"embeddings.model={card}", "--set", "embeddings.batch_size=4",
                                "--backend", backend, "--device", "cpu", "--workers", "2")
        assert code == 0, err
        rows = rows_by_file(tmp_path / backend)
        assert sorted(rows) == [f"c{i}.wav" for i in range(10)]
        probes[backend] = np.array([r["embedding"] for name in sorted(rows) for r in rows[name]])
    np.testing.assert_allclose(probes["torch"][:, 0], probes["numpy"][:, 0], atol=1e-7)  # same windows
    assert set(probes["numpy"][:, 1]) == {1.0} and set(probes["numpy"][:, 2]) == {1.0}  # a file at a time
    assert set(probes["torch"][:, 1]) == {4.0}  # every forward pass is a full batch
    assert probes["torch"][:, 2].max() == 4.0  # holding windows of four files


# --------------------------------------------------------------------------------------------
# User models: TorchScript and ONNX, with their model cards


if HAS_TORCH:
    import torch

    class _WindowStats(torch.nn.Module):
        """A stand-in network: per window, [mean, max, first sample, last sample]."""

        def forward(self, x):
            return torch.stack([x.mean(dim=1), x.max(dim=1).values, x[:, 0], x[:, -1]], dim=1)


def write_card(path: Path, file: str, **extra) -> Path:
    fields = {"name": "stats", "file": file, "sample_rate": 8000, "dim": 4, "window_s": 0.5, "hop_s": 0.25, **extra}
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()) + "\n")
    return path


def expected_stats(samples: np.ndarray, sr: int, window_s: float, hop_s: float) -> list[tuple]:
    win, hop = round(window_s * sr), round(hop_s * sr)
    n = samples.size
    count = 1 + max(0, -(-(n - win) // hop))
    out = []
    for k in range(count):
        clip = np.zeros(win, dtype=np.float32)
        piece = samples[k * hop : k * hop + win]
        clip[: piece.size] = piece
        out.append((k * hop / sr, min((k * hop + win) / sr, n / sr), [clip.mean(), clip.max(), clip[0], clip[-1]]))
    return out


@needs_torch
def test_torchscript_user_model_round_trip(tmp_path: Path):
    import torch

    torch.jit.script(_WindowStats()).save(str(tmp_path / "stats.pt"))
    card = write_card(tmp_path / "stats.toml", "stats.pt")
    samples = tone(8000, 1.3, freq=50.0)[:, 0]
    write_audio(tmp_path / "in" / "x.wav", samples[:, None], 8000)
    code, _, err = run_json("extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings",
                            "--set", f"embeddings.model={card}", "--workers", "1")
    assert code == 0, err
    rows = rows_by_file(tmp_path / "out")["x.wav"]
    decoded = __import__("soundfile").read(str(tmp_path / "in" / "x.wav"), dtype="float32")[0]
    expected = expected_stats(decoded, 8000, 0.5, 0.25)
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(s, e) for s, e, _ in expected]
    assert [r["start_s"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]  # 1.0–1.5 padded, ends at 1.3
    np.testing.assert_allclose([r["embedding"] for r in rows], [v for *_, v in expected], rtol=1e-5, atol=1e-6)
    assert {r["model"] for r in rows} == {"stats"}


@needs_onnx
def test_onnx_user_model_round_trip(tmp_path: Path):
    onnx = pytest.importorskip("onnx")  # skips too where a dependency of onnx is missing
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    win = 4000  # 0.5 s at 8 kHz
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((win, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["clips", "w"], ["embedding"])],
        "projection",
        [helper.make_tensor_value_info("clips", TensorProto.FLOAT, ["batch", win])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "proj.onnx"))
    card = write_card(tmp_path / "proj.toml", "proj.onnx", name="proj", dim=3, output="embedding")
    samples = tone(8000, 2.2, freq=120.0)
    write_audio(tmp_path / "in" / "y.wav", samples, 8000)
    code, _, err = run_json("extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings",
                            "--set", f"embeddings.model={card}", "--workers", "1")
    assert code == 0, err
    rows = rows_by_file(tmp_path / "out")["y.wav"]
    decoded = __import__("soundfile").read(str(tmp_path / "in" / "y.wav"), dtype="float32")[0]
    starts = [round(r["start_s"] * 8000) for r in rows]
    assert starts == list(range(0, 8000 * 2, 2000))  # the last window (2.0 s) is padded, ends at 2.2
    assert rows[-1]["end_s"] == pytest.approx(2.2)
    clips = np.zeros((len(starts), win), dtype=np.float32)
    for i, s in enumerate(starts):
        piece = decoded[s : s + win]
        clips[i, : piece.size] = piece
    np.testing.assert_allclose([r["embedding"] for r in rows], clips @ weight, rtol=1e-4, atol=1e-4)


def test_bad_model_card_is_a_config_error(tmp_path: Path):
    (tmp_path / "in").mkdir()
    card = tmp_path / "broken.toml"
    card.write_text('file = "nothing.onnx"\nsample_rate = 16000\n')
    proc = run_cli("extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings", "--set", f"embeddings.model={card}")
    assert proc.returncode == 2
    assert "model card" in proc.stderr and "dim" in proc.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# Missing pieces are one-line config errors


def test_missing_checkpoint_says_how_to_get_it(tmp_path: Path):
    (tmp_path / "in").mkdir()
    write_audio(tmp_path / "in" / "x.wav", tone(16000, 1.0), 16000)
    proc = run_cli(
        "extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings", "--set", "embeddings.model=cnn14",
        env={"AUDIOKIT_MODEL_DIR": str(tmp_path / "models")},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if HAS_TORCH:
        assert "audiokit models pull cnn14" in lines[0] and "embeddings.weights=PATH" in lines[0]
        assert str(tmp_path / "models") in lines[0]
    assert not (tmp_path / "out").exists()
    proc = run_cli("models", "list", "--json", env={"AUDIOKIT_MODEL_DIR": str(tmp_path / "models")})
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert listed["cnn14"]["weights_present"] is False
    assert listed["cnn14"]["dim"] == 2048 and listed["cnn14"]["sample_rate"] == 32000
    assert listed["ge2e"]["weights_present"] is HAS_RESEMBLYZER


def test_without_torch_the_package_imports_and_embeddings_is_a_config_error(tmp_path: Path):
    code = (
        "import sys\n"
        "class NoTorch:\n"  # torch as if not installed: finding or importing it fails
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import audiokit.extractors, audiokit.models\n"
        "from audiokit.config import load_config\n"
        "from audiokit.errors import ConfigError\n"
        "load_config(extractors=['mfcc'])\n"
        "try:\n"
        "    load_config(extractors=['embeddings'])\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "ConfigError: embeddings: model ge2e needs torch: pip install 'audiokit[torch]'" in proc.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("embeddings.dtype=float16", "float16 needs device=cuda"),
        ("embeddings.window_s=0", "window_s=0"),
        ("embeddings.batch_size=0", "batch_size=0"),
        ("embeddings.pooling=median", "allowed: one of: none, mean, max"),
        ("embeddings.model=nope", "embeddings.model='nope': unknown model"),
    ],
)
@needs_ge2e
def test_bad_params_are_config_errors(setting: str, message: str):
    from audiokit.config import load_config
    from audiokit.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        load_config(extractors=["embeddings"], overrides=[setting])


@needs_torch
def test_model_uses_the_thread_budget_it_is_given(tmp_path: Path):
    code = (
        "import torch\n"
        "from audiokit.models.registry import GE2E, _torch_runner\n"
        "_torch_runner(torch.nn.Identity(), 'cpu', 'float32')\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "AUDIOKIT_TORCH_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    assert proc.stdout.strip() == "1", proc.stderr


# --------------------------------------------------------------------------------------------
# CNN14 with a checkpoint passed as weights=PATH (random weights: the official file is 327 MB)


@pytest.fixture(scope="module")
def cnn14_checkpoint(tmp_path_factory) -> Path:
    if not HAS_TORCH:
        pytest.skip("torch not installed")
    import torch

    from audiokit.models.networks import Cnn14

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cnn14") / "random.pth"
    torch.save({"model": Cnn14().state_dict()}, path)
    return path


@needs_torch
def test_cnn14_padded_window_equals_explicit_zero_padding(cnn14_checkpoint: Path):
    settings = ["embeddings.model=cnn14", f"embeddings.weights={cnn14_checkpoint}", "embeddings.window_s=1.0",
                "embeddings.hop_s=1.0", "embeddings.device=cpu", "embeddings.batch_size=2"]
    ext = build(settings)
    y = tone(32000, 1.4, freq=1000.0)[:, 0][None]
    padded = np.concatenate([y, np.zeros((1, 32000 * 2 - y.shape[1]), dtype=np.float32)], axis=1)
    rows = stream_rows(ext, y, 20000)
    rows_padded = stream_rows(ext, padded, 20000)
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(0.0, 1.0), (1.0, 1.4)]
    assert [(r["start_s"], r["end_s"]) for r in rows_padded] == [(0.0, 1.0), (1.0, 2.0)]
    np.testing.assert_array_equal(rows[1]["embedding"], rows_padded[1]["embedding"])
    assert len(rows[0]["embedding"]) == 2048


@needs_torch
def test_cnn14_refuses_to_unpickle_an_unpinned_checkpoint(tmp_path: Path):
    import torch

    from audiokit.models.registry import ModelError, PannsCnn14

    path = tmp_path / "odd.pth"
    torch.save({"model": {}, "extra": np.arange(3)}, path)  # a numpy array: not weights-only
    with pytest.raises(ModelError, match="refusing to unpickle"):
        PannsCnn14().load(weights=str(path), device="cpu", dtype="float32")


# --------------------------------------------------------------------------------------------
# Downloads against a real HTTP server on 127.0.0.1


class _Server:
    """Serves `payload` at any path; honours Range; optionally cuts the first response short."""

    def __init__(self, payload: bytes, cut_after: int | None = None, honour_range: bool = True):
        self.payload = payload
        self.cut_after = cut_after
        self.honour_range = honour_range
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                outer.ranges.append(header)
                if not outer.honour_range:
                    header = None
                start = int(header.split("=")[1].split("-")[0]) if header else 0
                body = outer.payload[start:]
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(body[: outer.cut_after])
                    outer.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the transfer dies half-way
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(7).bytes(3 * (1 << 20) + 12345)


def test_download_good_checksum(tmp_path: Path, payload: bytes):
    from audiokit.models.download import fetch

    server = _Server(payload)
    try:
        dest = fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    finally:
        server.close()
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def test_download_bad_checksum_leaves_nothing(tmp_path: Path, payload: bytes):
    from audiokit.models.download import DownloadError, fetch

    server = _Server(payload)
    try:
        with pytest.raises(DownloadError, match="does not match the pinned"):
            fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256="0" * 64, size=len(payload))
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


def test_download_interrupted_then_resumed(tmp_path: Path, payload: bytes):
    from audiokit.models.download import DownloadError, fetch

    digest = hashlib.sha256(payload).hexdigest()
    server = _Server(payload, cut_after=(1 << 20) + 5)
    try:
        with pytest.raises(DownloadError, match="run again to resume"):
            fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256=digest, size=len(payload))
        assert not (tmp_path / "w.pth").exists()
        kept = (tmp_path / "w.pth.part").stat().st_size
        assert 0 < kept < len(payload)
        dest = fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256=digest, size=len(payload))
    finally:
        server.close()
    assert server.ranges == [None, f"bytes={kept}-"]  # the second request asked only for the rest
    assert dest.read_bytes() == payload
    assert not (tmp_path / "w.pth.part").exists()


def test_models_pull_checks_the_pinned_digest(tmp_path: Path, payload: bytes):
    """`audiokit models pull cnn14` from a mirror serving other bytes: refused, nothing cached."""
    server = _Server(payload)
    try:
        proc = run_cli("models", "pull", "cnn14",
                       env={"AUDIOKIT_MODEL_DIR": str(tmp_path / "models"), "AUDIOKIT_MODEL_MIRROR": server.url})
    finally:
        server.close()
    assert proc.returncode == 1
    assert "expected 327428481" in proc.stderr or "does not match the pinned" in proc.stderr
    assert server.ranges == [None]
    assert list((tmp_path / "models").iterdir()) == []


@needs_torch
def test_slow_models_raise_the_per_file_time_limit(tmp_path: Path):
    from audiokit.config import load_config
    from audiokit.stages import Stages

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")  # only its existence is checked at config time
    limits = {}
    for model in ("ge2e", "cnn14"):
        config = load_config(extractors=["mfcc", "embeddings"], overrides=[f"embeddings.model={model}", f"embeddings.weights={weights}"])
        limits[model] = Stages(config, str(tmp_path)).seconds_per_audio_hour()
    plain = Stages(load_config(extractors=["mfcc"]), str(tmp_path)).seconds_per_audio_hour()
    assert plain == 600.0  # run.file_timeout's default, untouched without a slow extractor
    # CNN14 on one CPU thread runs at about 4x real time: an hour needs more than the default.
    assert limits["cnn14"] >= 3600.0 > limits["ge2e"] >= 600.0


@needs_torch
def test_corrupt_checkpoint_is_a_per_file_error(tmp_path: Path):
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"this is not a checkpoint")
    write_audio(tmp_path / "in" / "a.wav", tone(16000, 1.0), 16000)
    write_audio(tmp_path / "in" / "b.wav", tone(16000, 1.0, freq=300.0), 16000)
    code, summary, err = run_json("extract", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-x", "embeddings",
                                  "--set", f"embeddings.weights={weights}", "--workers", "1")
    assert code == 1, err
    assert summary["failed"] == 2
    assert {e["error_kind"] for e in summary["errors"]} == {"extract"}
    assert all("cannot load model ge2e" in e["error"] for e in summary["errors"])


def test_download_resume_from_a_server_that_ignores_ranges(tmp_path: Path, payload: bytes):
    from audiokit.models.download import DownloadError, fetch

    digest = hashlib.sha256(payload).hexdigest()
    server = _Server(payload, cut_after=100_000, honour_range=False)
    try:
        with pytest.raises(DownloadError):
            fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256=digest, size=len(payload))
        dest = fetch(f"{server.url}/w.pth", tmp_path / "w.pth", sha256=digest, size=len(payload))
    finally:
        server.close()
    assert server.ranges == [None, "bytes=100000-"]  # asked for the rest, got the whole file (200)
    assert dest.read_bytes() == payload  # started over instead of appending the whole file
