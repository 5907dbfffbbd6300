"""Throughput of the numpy backend vs torch on CPU vs torch on CUDA (when there is one).

    python scripts/bench_gpu.py                    # 64 ten-second clips, mfcc + spectral
    python scripts/bench_gpu.py --clips 2048 --e2e-clips 512 --chain mfcc,logmel,spectral

Features only: the clips are already decoded and resampled (22.05 kHz float32 arrays in host
memory). numpy runs each clip through the extractor's stream, as a worker does; torch packs all
clips into device batches with `compute_batch` (host packing, copies and the copy back
included); on CUDA a second figure keeps the samples on the device (compute only).
End to end: the clips written as FLAC, `audiokit.extract` over them (decode in worker
processes, compute, Parquet), with the share of the run the torch engine spent computing.
Every torch figure comes with its parity check against numpy (max|Δ| over the column's peak).
Speeds are given as multiples of real time (seconds of audio per second of wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SR = 22050


def make_clips(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Tones with harmonics, a sweep and noise at varying levels: `(1, n)` float32 each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    clips = []
    for i in range(count):
        f0 = rng.uniform(80, 800)
        y = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in range(1, 5))
        y += 0.2 * np.sin(2 * np.pi * (200 + 3000 * t / seconds) * t) * (i % 2)
        y += rng.uniform(0.001, 0.05) * rng.standard_normal(t.size)
        clips.append((rng.uniform(0.1, 1.0) * y).astype(np.float32)[None])
    return clips


def extractors(chain: list[str], backend: str, device: str = "cpu"):
    from audiokit.config import load_config
    from audiokit.extractors import REGISTRY

    config = load_config(None, extractors=chain)
    return {
        name: REGISTRY[name](config.params[name], backend=backend, device=device) for name in chain
    }


def numpy_columns(ext, clip: np.ndarray) -> dict[str, np.ndarray]:
    """One clip through the numpy stream, as `(channels, frames, ...)` columns."""
    import pyarrow as pa

    stream = ext.start(clip.shape[0], ext.params.sr)
    batches = [*stream.push(clip), *stream.finish()]
    out = {}
    for field in ext.feature_fields():
        parts = []
        for batch in batches:
            column = batch.column(field.name)
            if pa.types.is_fixed_size_list(column.type):
                parts.append(np.asarray(column.flatten()).reshape(len(column), -1))
            else:
                parts.append(np.asarray(column))
        values = np.concatenate(parts)
        out[field.name] = values.reshape((clip.shape[0], -1) + values.shape[1:])
    return out


def numpy_all(ext, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    return [numpy_columns(ext, c) for c in clips]


def parity(reference: list[dict], actual: list[dict]) -> dict[str, float]:
    """Per column: max|Δ| over all clips divided by the column's peak |value|."""
    worst: dict[str, float] = {}
    for ref, act in zip(reference, actual):
        for name, values in ref.items():
            got = act[name].reshape(values.shape)
            peak = max(float(np.abs(values).max()), 1e-30)
            worst[name] = max(
                worst.get(name, 0.0), float(np.abs(values.astype(np.float64) - got).max()) / peak
            )
    return worst


def timed(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def features_only(args, clips, devices) -> dict:
    import torch

    from audiokit.extractors.batched import compute_batch, default_max_frames

    audio_s = sum(c.shape[1] for c in clips) / SR
    report = {"clips": len(clips), "clip_s": args.seconds, "audio_s": audio_s, "extractors": {}}
    numpy_exts = extractors(args.chain, "numpy")
    for name, ext in numpy_exts.items():
        entry = report["extractors"][name] = {}
        reference_clips = clips[: args.numpy_clips]
        numpy_all(ext, reference_clips[:1])  # imports (scipy.fft) and caches out of the timing
        seconds, reference = timed(partial(numpy_all, ext, reference_clips), args.repeat)
        entry["numpy"] = {
            "x_realtime": round(sum(c.shape[1] for c in reference_clips) / SR / seconds, 1)
        }
        for device in devices:
            torch_ext = extractors([name], "torch", device)[name]
            torch_ext.torch_module()
            max_frames = args.max_frames or default_max_frames(torch_ext, torch_ext.torch_device)
            frames = sum(c.shape[1] // ext.hop_length + 1 for c in clips)
            run = partial(compute_batch, torch_ext, clips, max_frames=max_frames)
            run()  # warm-up: kernels, pinned buffers
            seconds, result = timed(run, args.repeat)
            figures = {
                "x_realtime": round(audio_s / seconds, 1),
                "frames": frames,
                "frames_per_device_batch": min(max_frames, frames),
                "clips_per_device_batch": round(min(max_frames, frames) / (frames / len(clips)), 1),
                "parity_max_abs_diff_over_peak": {
                    k: float(f"{v:.3g}")
                    for k, v in parity(reference, result[: len(reference)]).items()
                },
            }
            if device == "cuda":
                figures["device_resident_x_realtime"] = round(
                    audio_s / device_resident(torch_ext, clips, max_frames), 1
                )
            entry[f"torch-{device}"] = figures
            if device == "cuda":
                torch.cuda.empty_cache()
    return report


def device_resident(ext, clips: list[np.ndarray], max_frames: int) -> float:
    """Seconds to compute the clips' features when their padded samples are already on the GPU."""
    import torch

    from audiokit.dsp import torch_ops

    module = ext.torch_module()
    width, hop, length = ext.frame_length // 2, ext.hop_length, ext.frame_length
    padded = np.stack([np.pad(c[0], (width, width)) for c in clips])
    n_frames = 1 + (padded.shape[1] - length) // hop
    per_batch = max(1, max_frames // n_frames)
    batches = [
        torch.from_numpy(padded[i : i + per_batch]).cuda() for i in range(0, len(clips), per_batch)
    ]

    def run():
        for batch in batches:
            frames = torch_ops.frame(batch, length, hop).reshape(-1, length)
            columns = ext.torch_columns(module, [frames] * len(ext.pad_modes))
            if "_db" in columns:
                db = columns.pop("_db").reshape(batch.shape[0], n_frames, -1)
                floor = db.amax(dim=(1, 2), keepdim=True) - ext.peak_floor_db
                module.finalize(torch.maximum(db, floor))
        torch.cuda.synchronize()

    with torch.inference_mode():
        run()
        seconds, _ = timed(run, 3)
    return seconds


def end_to_end(args, clips, devices) -> dict:
    import soundfile as sf

    import audiokit
    from audiokit.stages import Finisher

    compute = {"s": 0.0, "flushes": 0}
    original = Finisher.flush

    def timed_flush(self):
        start = time.perf_counter()
        outcomes = original(self)
        compute["s"] += time.perf_counter() - start
        compute["flushes"] += 1
        return outcomes

    Finisher.flush = timed_flush
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        root.mkdir()
        for i, clip in enumerate(clips[: args.e2e_clips]):
            sf.write(str(root / f"clip{i:05d}.flac"), clip[0], SR, subtype="PCM_16")
        runs = [("numpy", "cpu")] + [("torch", d) for d in devices]
        for backend, device in runs:
            compute.update(s=0.0, flushes=0)
            out = Path(tmp) / f"out-{backend}-{device}"
            summary = audiokit.extract(
                [str(root)],
                str(out),
                extractors=args.chain,
                backend=backend,
                device=device,
                workers=args.workers,
            )
            key = backend if backend == "numpy" else f"torch-{device}"
            report[key] = {
                "files": summary.processed,
                "audio_s": round(summary.audio_s, 1),
                "wall_s": round(summary.wall_s, 2),
                "x_realtime": round(summary.audio_s / summary.wall_s, 1),
            }
            if backend == "torch":
                report[key]["compute_share_of_wall"] = round(compute["s"] / summary.wall_s, 3)
                report[key]["batches"] = compute["flushes"]
        report["parity_vs_numpy"] = table_parity(
            Path(tmp), [k for k in report if k.startswith("torch")], args.chain
        )
    Finisher.flush = original
    return report


def table_parity(tmp: Path, keys: list[str], chain: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.dataset as pads

    def read(path):
        return (
            pads.dataset(str(path))
            .to_table()
            .sort_by([("file_id", "ascending"), ("channel", "ascending"), ("frame", "ascending")])
        )

    out = {}
    for key in keys:
        entry = out[key] = {}
        for table in chain:
            ref, act = read(tmp / "out-numpy-cpu" / table), read(tmp / f"out-{key}" / table)
            entry[table] = {"rows_equal": ref.num_rows == act.num_rows}
            if ref.num_rows != act.num_rows:
                continue
            for name in ref.schema.names[4:]:
                a, b = ref[name].combine_chunks(), act[name].combine_chunks()
                if pa.types.is_fixed_size_list(a.type):
                    a, b = a.flatten(), b.flatten()
                a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
                entry[table][name] = float(
                    f"{np.abs(a - b).max() / max(np.abs(a).max(), 1e-30):.3g}"
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64, help="10-second clips for features-only")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--numpy-clips", type=int, default=16, help="clips the (slow) numpy path runs"
    )
    parser.add_argument(
        "--e2e-clips", type=int, default=32, help="clips for the end-to-end runs (0: skip)"
    )
    parser.add_argument("--chain", default="mfcc,spectral")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="frames per device batch (default: memory budget)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args()
    args.chain = [c for c in args.chain.split(",") if c]

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    clips = make_clips(args.clips, args.seconds)
    report = {
        "torch": torch.__version__,
        "devices": devices,
        "cuda_device": torch.cuda.get_device_name(0) if "cuda" in devices else None,
        "cpu_threads": torch.get_num_threads(),
        "features_only": features_only(args, clips, devices),
    }
    if args.e2e_clips:
        report["end_to_end"] = end_to_end(args, clips, devices)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
