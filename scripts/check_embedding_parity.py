"""Parity of audiokit's embedding models with the original implementations, on real audio.

    python scripts/check_embedding_parity.py [--data ../shared/data] [--files 12] [--model ge2e|cnn14|all]

- ge2e: our network + front end (the `embeddings` extractor's stream, fed in 10 s blocks) vs
  resemblyzer's `VoiceEncoder.embed_utterance(return_partials=True)` with the official weights.
  Both get the same samples: the file at 16 kHz after resemblyzer's own `preprocess_wav`
  (volume normalisation, VAD trimming). resemblyzer's hop is set to ours (rate 1.25/s = 0.8 s).
- cnn14: the original network from the installed `panns_inference` package (its `models.py`,
  imported without the package's `__init__`, which downloads a label file) with random weights,
  including random batch-norm statistics, copied into ours; the same 32 kHz windows go through
  the original (torchlibrosa front end inside the network) and through our extractor.

Prints the cosine per window (min, median) per model; exits 1 if any window is below 0.999.
Needs: torch, resemblyzer (+ webrtcvad), panns_inference + torchlibrosa. Nothing here is used by
audiokit itself, and none of these packages' code is copied into audiokit.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audiokit.config import load_config  # noqa: E402 (after a guarded import)
from audiokit.extractors import REGISTRY  # noqa: E402 (after a guarded import)


def load(path: Path, sr: int) -> np.ndarray:
    y, native = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    return soxr.resample(y, native, sr).astype(np.float32) if native != sr else y


def our_rows(overrides: list[str], samples: np.ndarray, block: int) -> list[dict]:
    config = load_config(extractors=["embeddings"], overrides=overrides)
    ext = REGISTRY["embeddings"](config.params["embeddings"])
    stream = ext.start(1, ext.sample_rate)
    batches = []
    for i in range(0, len(samples), block):
        batches += stream.push(samples[None, i : i + block])
    batches += stream.finish()
    rows = []
    for b in batches:
        d = b.to_pydict()
        for start, end, vec in zip(d["start_s"], d["end_s"], d["embedding"]):
            rows.append({"start_s": start, "end_s": end, "embedding": np.asarray(vec, dtype=np.float32)})
    return rows


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb))


def speech_files(data: Path, count: int) -> list[Path]:
    files = sorted((data / "devcorpus" / "resemble-ai__Resemblyzer").glob("*.flac"))[: max(0, count - 2)]
    files += [data / "lhotse" / "LJ002-0020.wav", data / "lhotse" / "libri-1088-134315-0000.wav"]
    return [f for f in files if f.exists()]


def check_ge2e(data: Path, count: int) -> list[float]:
    if importlib.util.find_spec("pkg_resources") is None:
        # webrtcvad 2.0.10 reads its version through pkg_resources, gone from new setuptools.
        sys.modules["pkg_resources"] = types.SimpleNamespace(
            get_distribution=lambda name: types.SimpleNamespace(version="unknown")
        )
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    cosines, last = [], []
    for path in speech_files(data, count):
        wav = preprocess_wav(load(path, 16000), source_sr=None)
        _, partials, slices = encoder.embed_utterance(wav, return_partials=True, rate=1.25, min_coverage=0.5)
        ours = our_rows(["embeddings.model=ge2e", "embeddings.window_s=1.6", "embeddings.hop_s=0.8"], wav, 160000)
        by_start = {round(r["start_s"] * 16000): r for r in ours}
        file_cos = []
        for vec, sl in zip(partials, slices):
            row = by_start.get(sl.start)
            if row is None:
                continue
            c = cosine(vec, row["embedding"])
            # A window reaching past the end is zero-padded by both, but resemblyzer computes its
            # mel on the padded signal: its last frames differ slightly from ours (padded frames).
            (last if sl.stop > len(wav) else file_cos).append(c)
        cosines += file_cos
        print(f"ge2e {path.name}: {len(wav) / 16000:.2f} s, {len(file_cos)} full windows, min cosine {min(file_cos, default=float('nan')):.6f}")
    if last:
        print(f"ge2e: {len(last)} windows padded past the end: min cosine {min(last):.6f}, "
              f"max (1 - cos) {max(1 - c for c in last):.2e}")
    return cosines


def _panns_cnn14():
    spec = importlib.util.find_spec("panns_inference")
    package = types.ModuleType("panns_inference")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["panns_inference"] = package
    if importlib.util.find_spec("matplotlib") is None:  # imported by models.py, unused by Cnn14
        mpl = types.ModuleType("matplotlib")
        mpl.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.update({"matplotlib": mpl, "matplotlib.pyplot": mpl.pyplot})
    from panns_inference.models import Cnn14

    return Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527)


def check_cnn14(data: Path, count: int, window_s: float) -> list[float]:
    import torch

    torch.manual_seed(0)
    original = _panns_cnn14()
    # Random batch-norm statistics and affine terms too, so bn0 and every block are exercised.
    with torch.no_grad():
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    original.eval()
    checkpoint = Path(tempfile.mkdtemp()) / "cnn14-random.pth"
    torch.save({"model": original.state_dict()}, checkpoint)

    files = sorted((data / "devcorpus" / "MTG__sms-tools").glob("*.flac"))[: count // 2]
    files += speech_files(data, count - len(files))
    cosines = []
    win = round(window_s * 32000)
    for path in files:
        y = load(path, 32000)
        ours = our_rows(
            ["embeddings.model=cnn14", f"embeddings.weights={checkpoint}", f"embeddings.window_s={window_s}",
             f"embeddings.hop_s={window_s / 2}", "embeddings.device=cpu", "embeddings.batch_size=4"],
            y, 320000,
        )
        clips = []
        for row in ours:
            start = round(row["start_s"] * 32000)
            clip = np.zeros(win, dtype=np.float32)
            piece = y[start : start + win]
            clip[: len(piece)] = piece
            clips.append(clip)
        with torch.no_grad():
            reference = original(torch.from_numpy(np.stack(clips)))["embedding"].numpy()
        file_cos = [cosine(a, r["embedding"]) for a, r in zip(reference, ours)]
        cosines += file_cos
        print(f"cnn14 {path.name}: {len(y) / 32000:.2f} s, {len(file_cos)} windows, min cosine {min(file_cos):.6f}")
    return cosines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = next((p for p in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data") if p.is_dir()), None)
    parser.add_argument("--data", type=Path, default=default_data, help="../shared/data (real recordings)")
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--model", choices=("ge2e", "cnn14", "all"), default="all")
    parser.add_argument("--cnn14-window", type=float, default=2.0)
    args = parser.parse_args()
    if args.data is None or not args.data.is_dir():
        parser.error("no recordings found: pass --data DIR (the shared/data folder)")
    failed = False
    results = {}
    if args.model in ("ge2e", "all"):
        results["ge2e"] = check_ge2e(args.data, args.files)
    if args.model in ("cnn14", "all"):
        results["cnn14"] = check_cnn14(args.data, args.files, args.cnn14_window)
    for name, values in results.items():
        values = np.asarray(values)
        print(f"{name}: {values.size} windows, cosine min {values.min():.6f}, median {np.median(values):.6f}, "
              f"max abs (1 - cos) {np.max(1 - values):.2e}")
        failed |= bool(values.size == 0 or values.min() < 0.999)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
