#!/usr/bin/env python3
"""Throughput, memory and start-up of audiokit against the pipeline people write by hand.

    python scripts/bench.py                # corpus + A/B throughput + start-up
    python scripts/bench.py --memory       # 1 h and 10 h 44.1 kHz stereo FLAC, --workers 1
    python scripts/bench.py --one-core     # per-core cost: the three pipelines in this process
    python scripts/bench.py --profile      # where a worker's time goes: decode, resample, STFT, …
    python scripts/bench.py --engine ray   # --engine ray against the local engine, same CPUs
    python scripts/bench.py --engine ray --scale 24   # the same on a corpus 24 times as long
    python scripts/bench.py --clips 1200   # throughput on 1,200 clips of 5 s: per-file overhead
    python scripts/bench.py -x mfcc,spectral,chroma,loudness,summary   # a chain against -x mfcc

Throughput: a corpus of mixed formats (WAV/FLAC/MP3/OGG, 8–48 kHz, mono and stereo, ≥ 30 min,
generated here) is processed, alternating A/B for `--rounds` rounds, by
  audiokit   `audiokit extract CORPUS -o OUT -x mfcc --workers N`
  librosa    a multiprocessing.Pool(N) around librosa.load(sr=22050, mono=True) →
             librosa.feature.mfcc → one Parquet file
  floor      the same pool doing only decode + downmix + resample to 22050 Hz (soxr HQ),
             with audiokit's decoder, downmix and resampler
Every pipeline gets the same start: a fresh process (`bench.py --pipeline NAME`, as the audiokit
command is one) that imports what its workers need and warms it (librosa: one mfcc call, so
numba's code is loaded) before it forks them; workers with one BLAS thread and freed memory
kept for reuse (audiokit's `mallopt`); files handed out longest first (by size, as audiokit's
queue); numba's on-disk cache and the page cache warmed by an untimed round of each.
It checks that audiokit's MFCC equals librosa's and prints real-time factors (per format: one
core, audiokit's worker path and the floor, no start-up), the speedup over librosa, audiokit's
time over the decode floor, the CPU seconds of each run's process tree (user + system, from
`os.wait4`, workers included) and its peak RSS (from /proc).

`--one-core` runs the same three pipelines file by file in this process on one thread (CPU time
of this process, `time.process_time`), without
interpreter start-up, worker processes or the writer's commits (audiokit: what one worker does
per file, staged parts included; all three with freed memory kept for reuse, as in audiokit's
workers): the cost per core, which is what decides throughput on corpora much larger than the
benchmark's. It also times the MFCC alone, on signals decoded and resampled beforehand: the
floor plus that (`floor_plus_mfcc_over_floor`) is what audiokit would cost with nothing else per
file, and `rest_per_file_ms` is what it spends beyond both.

`-x CHAIN` (the "catalogue" chain `mfcc,spectral,chroma,loudness,summary`, say) measures, per
core and in this process like `--one-core`, `-x mfcc`, CHAIN without `loudness` (if it has it)
and CHAIN, alternating for `--rounds` rounds: × real time per core, each chain's time over
`-x mfcc`'s, and what `loudness` adds to the rest of the chain.

Every process here starts with one OpenBLAS thread, as the audiokit command does for itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # audiokit, installed or not

LAYOUTS = [  # (format dir, extension, soundfile format, subtype, rate, channels, minutes)
    ("wav", "wav", "WAV", "PCM_16", 44100, 2, 9.0),
    ("wav", "wav", "WAV", "PCM_16", 16000, 1, 3.0),
    ("flac", "flac", "FLAC", "PCM_16", 48000, 2, 6.0),
    ("flac", "flac", "FLAC", "PCM_24", 22050, 1, 3.0),
    ("mp3", "mp3", "MP3", "MPEG_LAYER_III", 44100, 2, 6.0),
    ("mp3", "mp3", "MP3", "MPEG_LAYER_III", 16000, 1, 2.0),
    ("ogg", "ogg", "OGG", "VORBIS", 32000, 2, 3.0),
    ("ogg", "ogg", "OGG", "VORBIS", 8000, 1, 2.0),
]
FILE_MINUTES = 1.0  # files of about a minute, a few longer ones for balance


def synth(sr: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Music-like audio: a few drifting partials, a beat and noise (compresses like real audio)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for _ in range(4):
        f0 = rng.uniform(80, 1200)
        y += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t))
    y += 0.3 * np.exp(-((t * rng.uniform(1.5, 3)) % 1.0) * 30) * rng.standard_normal(t.size)
    y += 0.02 * rng.standard_normal(t.size)
    y = 0.8 * y / np.abs(y).max()
    out = np.stack([y * (1 - 0.2 * c) + 0.01 * rng.standard_normal(t.size) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def build_corpus(root: Path, clips: int | None = None, clip_seconds: float = 5.0, scale: int = 1) -> list[Path]:
    """The benchmark corpus: files of about a minute in every layout (`scale` times the
    minutes), or (`clips`) that many short clips of `clip_seconds` spread over the layouts
    (per-file overhead)."""
    marker = root / ".complete"
    if marker.exists():
        return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".complete")
    shutil.rmtree(root, ignore_errors=True)
    paths, seed = [], 0
    for fmt_dir, ext, fmt, subtype, sr, ch, minutes in LAYOUTS:
        remaining = minutes * 60 * scale if clips is None else clips // len(LAYOUTS) * clip_seconds
        while remaining > 0:
            seconds = min(remaining, FILE_MINUTES * 60 * (3 if seed % 7 == 0 else 1)) if clips is None else clip_seconds
            path = root / fmt_dir / f"{sr}Hz_{ch}ch_{seed:03d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), synth(sr, seconds, ch, seed), sr, format=fmt, subtype=subtype)
            paths.append(path)
            remaining -= seconds
            seed += 1
    marker.write_text("ok")
    return paths


# -- the hand-written pipelines (run in a Pool, like users do) ----------------------------------


def _librosa_one(path: str):
    import librosa

    y, sr = librosa.load(path, sr=22050, mono=True)
    return path, librosa.feature.mfcc(y=y, sr=sr).T.astype(np.float32)


def _resampled(path: str):
    """Decode in blocks, downmix, resample: the work no feature pipeline can avoid, done with
    audiokit's own decoder (its integer-PCM reads are the fastest we know), downmix and soxr HQ.
    Yields the 22,050 Hz mono signal piece by piece."""
    from audiokit.audio import Resampler, apply_channel_policy, open_audio

    with open_audio(path) as reader:
        resampler = Resampler(reader.info.sample_rate, 22050, 1)
        for block in reader.blocks(reader.info.sample_rate * 10):
            yield resampler.push(apply_channel_policy(block, "mix"))
        yield resampler.finish(1)


def _floor_one(path: str) -> float:
    return sum(len(piece) for piece in _resampled(path)) / 22050


def _pool_init():
    from audiokit.engines.local import reuse_freed_memory

    os.environ["OMP_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    reuse_freed_memory()  # the malloc setting audiokit's workers run with


def longest_first(paths: list[str]) -> list[str]:
    """The order audiokit's queue hands files out in."""
    return sorted(paths, key=os.path.getsize, reverse=True)


def run_pipeline(name: str, paths: list[str], out: str, workers: int) -> None:
    """One hand-written pipeline in this (fresh) process: imports and warm-up, then the pool."""
    if name == "librosa":
        import librosa
        import pyarrow as pa
        import pyarrow.parquet as pq

        librosa.feature.mfcc(y=np.zeros(4096, np.float32), sr=22050)  # numba code loaded before the fork
        work = _librosa_one
    else:
        import audiokit.audio  # noqa: F401 (decoder, soxr: imported once, before the fork)

        work = _floor_one
    with multiprocessing.get_context("fork").Pool(workers, initializer=_pool_init) as pool:
        results = list(pool.imap_unordered(work, longest_first(paths)))
    if name == "librosa":
        os.makedirs(out, exist_ok=True)
        rows = [
            pa.table({"path": [path] * len(mfcc), "frame": np.arange(len(mfcc)),
                      "mfcc": pa.FixedSizeListArray.from_arrays(pa.array(mfcc.reshape(-1)), 20)})
            for path, mfcc in results
        ]
        pq.write_table(pa.concat_tables(rows), os.path.join(out, "mfcc.parquet"))


# -- measuring -----------------------------------------------------------------------------------


class TreeRSS:
    """Peak of the summed RSS of a process and all its descendants, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return out

    def _sample(self) -> int:
        total, stack = 0, [self.pid]
        while stack:
            pid = stack.pop()
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                continue
            stack += self._children(pid)
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed_subprocess(cmd: list[str]) -> tuple[float, int, subprocess.CompletedProcess, float]:
    """(wall s, peak tree RSS, the process, CPU s of it and every descendant it waited for)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True)
        rss = TreeRSS(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, stdout.read(), stderr.read())
    return wall, rss.stop(), done, usage.ru_utime + usage.ru_stime


def pipeline_cmd(name: str, paths_file: str, out: str, workers: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--pipeline", name, "--paths-file", paths_file,
            "--out", out, "--workers", str(workers)]


def audiokit_cmd(inputs: list[str], out: str, workers: int, extra=()) -> list[str]:
    return [sys.executable, "-m", "audiokit", "extract", *inputs, "-o", out, "-x", "mfcc", "--workers", str(workers), "--json", "--quiet", *extra]


def check_equal(audiokit_out: str, librosa_out: str) -> float:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = {r["file_id"]: r["path"] for r in ds.dataset(os.path.join(audiokit_out, "files")).to_table().to_pylist()}
    ours = ds.dataset(os.path.join(audiokit_out, "mfcc")).to_table().to_pandas()
    ref = pq.read_table(os.path.join(librosa_out, "mfcc.parquet")).to_pandas()
    worst = 0.0
    for file_id, group in ours.groupby("file_id"):
        a = np.stack(group.sort_values("frame").mfcc.to_numpy())
        b = np.stack(ref[ref.path == files[file_id]].sort_values("frame").mfcc.to_numpy())
        assert a.shape == b.shape, (files[file_id], a.shape, b.shape)
        worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
    return worst


def throughput(args) -> dict:
    corpus = Path(args.corpus)
    if args.clips:
        corpus = corpus.with_name(f"{corpus.name}-clips{args.clips}")
    paths = [str(p) for p in build_corpus(corpus, args.clips)]
    audio_s = sum(sf.info(p).duration for p in paths)
    print(f"corpus: {len(paths)} files, {audio_s / 60:.1f} min of audio, {sum(os.path.getsize(p) for p in paths) / 1e6:.0f} MB", flush=True)
    results: dict[str, list[tuple[float, int, float]]] = {"audiokit": [], "librosa": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths_file = os.path.join(tmp, "paths.txt")
        Path(paths_file).write_text("\n".join(paths))

        def command(name: str, out: str) -> list[str]:
            if name == "audiokit":
                return audiokit_cmd([str(corpus)], out, args.workers)
            return pipeline_cmd(name, paths_file, out, args.workers)

        for name in results:  # untimed: numba's cache, the page cache, .pyc files
            proc = timed_subprocess(command(name, os.path.join(tmp, f"warm-{name}")))[2]
            assert proc.returncode == 0, proc.stderr
        for r in range(args.rounds):
            order = ["audiokit", "librosa", "floor"] if r % 2 == 0 else ["floor", "librosa", "audiokit"]
            for name in order:
                wall, rss, proc, cpu = timed_subprocess(command(name, os.path.join(tmp, f"{name}{r}")))
                assert proc.returncode == 0, proc.stderr
                results[name].append((wall, rss, cpu))
                print(f"  round {r} {name:<8} {wall:7.2f} s  {audio_s / wall:7.1f}× real time  CPU {cpu:6.2f} s"
                      f"  peak RSS {rss / 1e6:6.0f} MB", flush=True)
        worst = check_equal(os.path.join(tmp, "audiokit0"), os.path.join(tmp, "librosa0"))
        # Incremental: the same command over the same output again (nothing changed).
        rerun_wall, _, proc, _ = timed_subprocess(audiokit_cmd([str(corpus)], os.path.join(tmp, "audiokit0"), args.workers))
        rerun = json.loads(proc.stdout)
        assert rerun["processed"] == 0, rerun
    per_format = per_core_by_format(args)
    best = {name: min(w for w, _, _ in runs) for name, runs in results.items()}
    best_cpu = {name: min(c for _, _, c in runs) for name, runs in results.items()}
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "workers": args.workers,
        "audio_min": round(audio_s / 60, 1),
        "best_wall_s": {k: round(v, 2) for k, v in best.items()},
        "realtime": {k: round(audio_s / v, 1) for k, v in best.items()},
        "best_cpu_s": {k: round(v, 2) for k, v in best_cpu.items()},
        "realtime_per_cpu_s": {k: round(audio_s / v, 1) for k, v in best_cpu.items()},
        "realtime_per_core_by_format": per_format,
        "speedup_over_librosa": round(best["librosa"] / best["audiokit"], 2),
        "cpu_speedup_over_librosa": round(best_cpu["librosa"] / best_cpu["audiokit"], 2),
        "audiokit_over_floor": round(best["audiokit"] / best["floor"], 2),
        "audiokit_over_floor_cpu": round(best_cpu["audiokit"] / best_cpu["floor"], 2),
        "peak_rss_mb": {k: round(max(r for _, r, _ in v) / 1e6) for k, v in results.items()},
        "mfcc_max_rel_diff_vs_librosa": worst,
        "rerun_unchanged_s": round(rerun_wall, 2),
        "rerun_over_first_run": round(rerun_wall / results["audiokit"][0][0], 3),
    }
    return summary


def engines(args) -> dict:
    """`--engine ray` against the local engine on the corpus, the same CPUs (`--workers`), A/B
    alternated; Ray's start-up (a local instance started by the run, or `--ray-address`) is
    measured apart, as a run over one short file."""
    corpus = Path(args.corpus)
    if args.scale != 1:
        corpus = corpus.with_name(f"{corpus.name}-x{args.scale}")
    paths = [str(p) for p in build_corpus(corpus, scale=args.scale)]
    audio_s = sum(sf.info(p).duration for p in paths)
    ray = ["--engine", "ray"] + (["--ray-address", args.ray_address] if args.ray_address else [])
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        short = os.path.join(tmp, "short", "short.wav")
        os.makedirs(os.path.dirname(short))
        sf.write(short, synth(16000, 3.0, 1, 0), 16000)
        starts = {}
        for name, extra in (("local", []), ("ray", ray)):
            wall, _, proc, _ = timed_subprocess(audiokit_cmd([os.path.dirname(short)], os.path.join(tmp, f"s-{name}"), args.workers, extra))
            assert proc.returncode == 0, proc.stderr
            starts[name] = wall
        for r in range(args.rounds):
            for name in (["local", "ray"] if r % 2 == 0 else ["ray", "local"]):
                extra = ray if name == "ray" else []
                wall, _, proc, _ = timed_subprocess(audiokit_cmd([str(corpus)], os.path.join(tmp, f"{name}{r}"), args.workers, extra))
                assert proc.returncode == 0, proc.stderr
                walls[name].append(wall)
                print(f"  round {r} {name:<6} {wall:7.2f} s  {audio_s / wall:7.1f}× real time", flush=True)
    best = {name: min(v) for name, v in walls.items()}
    return {
        "audio_min": round(audio_s / 60, 1),
        "workers": args.workers,
        "best_wall_s": {k: round(v, 2) for k, v in best.items()},
        "ray_over_local_throughput": round(best["local"] / best["ray"], 2),
        "one_short_file_s": {k: round(v, 2) for k, v in starts.items()},
        # None when the one-file run took longer than the corpus (start-up varies that much).
        "ray_without_startup_over_local": round((best["local"] - starts["local"]) / (best["ray"] - starts["ray"]), 2)
        if best["ray"] > starts["ray"] else None,
    }


def startup(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        short = os.path.join(tmp, "short.wav")
        sf.write(short, synth(16000, 3.0, 1, 0), 16000)
        helps, runs = [], []
        for i in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "audiokit", "--help"], capture_output=True, check=True)
            helps.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(audiokit_cmd([short], os.path.join(tmp, f"o{i}"), 1), capture_output=True, check=True)
            runs.append(time.perf_counter() - t)
    return {"help_s": round(min(helps), 3), "one_short_file_s": round(min(runs), 3)}


def write_long_flac(path: str, hours: float) -> None:
    """44.1 kHz stereo FLAC written in one-minute pieces (never all in memory)."""
    if os.path.exists(path):
        return
    with sf.SoundFile(path + ".part", "w", 44100, 2, format="FLAC", subtype="PCM_16") as f:
        piece = synth(44100, 60.0, 2, 1)
        for _ in range(int(hours * 60)):
            f.write(piece)
    os.replace(path + ".part", path)


def memory(args) -> dict:
    """Peak RSS on long files (`--hours`, default 1 and 10), `-x mfcc,spectral` or `-x CHAIN`."""
    out = {}
    os.makedirs(args.long_dir, exist_ok=True)
    chain = args.extractors or "mfcc,spectral"
    lengths = [float(h) for h in args.hours.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for hours in lengths:
            hours = int(hours) if hours == int(hours) else hours
            path = os.path.join(args.long_dir, f"long_{hours}h.flac")
            write_long_flac(path, hours)
            wall, rss, proc, _ = timed_subprocess(audiokit_cmd([path], os.path.join(tmp, f"o{hours}"), 1, ("-x", chain)))
            assert proc.returncode == 0, proc.stderr
            out[f"{hours}h"] = {"peak_rss_mb": round(rss / 1e6), "wall_s": round(wall, 1), "realtime": round(hours * 3600 / wall, 1)}
            print(f"  {hours} h: peak RSS {rss / 1e6:.0f} MB, {wall:.1f} s", flush=True)
    first, last = (f"{int(h) if h == int(h) else h}h" for h in (lengths[0], lengths[-1]))
    out["chain"] = chain
    out[f"growth_{last}_over_{first}"] = round(out[last]["peak_rss_mb"] / out[first]["peak_rss_mb"] - 1, 3)
    return out


def _in_process_corpus(args):
    """One BLAS thread, freed memory kept as in audiokit's workers, and the corpus:
    (paths, seconds of audio, AudioFiles)."""
    from threadpoolctl import threadpool_limits

    from audiokit.engines.local import reuse_freed_memory

    threadpool_limits(1)
    reuse_freed_memory()
    from audiokit.discover import discover

    paths = [str(p) for p in build_corpus(Path(args.corpus))]
    audio_s = sum(sf.info(p).duration for p in paths)
    return paths, audio_s, discover([args.corpus], extensions=["wav", "flac", "mp3", "ogg"])


def _processor(tmp: str, chain: tuple[str, ...] = ("mfcc",)):
    """What one worker runs per file (`-x mfcc` or `chain`), staging its rows under `tmp`."""
    from audiokit.config import load_config
    from audiokit.pipeline import FileProcessor

    config = load_config(extractors=list(chain))
    FileProcessor.preload(config)
    return FileProcessor(config, staging_path=lambda file_id, table: os.path.join(tmp, f"{file_id}.{table}.arrow"))


def per_core_by_format(args) -> dict:
    """× real time on one core, per format: audiokit's worker path and the floor, file by file
    in this process (after the pools have run: nothing here is inherited by them)."""
    from audiokit.pipeline import Task

    paths, _, files = _in_process_corpus(args)
    by_path = {f.path: f for f in files}
    totals: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        processor = _processor(tmp)
        processor.process(Task(files[0], ("mfcc",)))  # imports and caches out of the timing
        _floor_one(paths[0])
        for path in paths:
            fmt = Path(path).parent.name
            entry = totals.setdefault(fmt, {"audio_s": 0.0, "audiokit": 0.0, "floor": 0.0})
            entry["audio_s"] += sf.info(path).duration
            start = time.perf_counter()
            processor.process(Task(by_path[os.path.abspath(path)], ("mfcc",)))
            entry["audiokit"] += time.perf_counter() - start
            start = time.perf_counter()
            _floor_one(path)
            entry["floor"] += time.perf_counter() - start
    return {fmt: {"audiokit": round(e["audio_s"] / e["audiokit"]), "floor": round(e["audio_s"] / e["floor"])}
            for fmt, e in sorted(totals.items())}


def one_core(args) -> dict:
    from audiokit.pipeline import Task

    paths, audio_s, files = _in_process_corpus(args)
    times: dict[str, list[float]] = {"audiokit": [], "librosa": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        processor = _processor(tmp)
        for name in ("librosa", "audiokit", "floor"):  # first use of each: imports, caches
            {"audiokit": lambda: processor.process(Task(files[0], ("mfcc",))),
             "librosa": lambda: _librosa_one(paths[0]), "floor": lambda: _floor_one(paths[0])}[name]()
        for r in range(args.rounds):
            for name in (["audiokit", "librosa", "floor"] if r % 2 == 0 else ["floor", "librosa", "audiokit"]):
                start = time.process_time()  # CPU seconds of this process: one thread works
                if name == "audiokit":
                    for f in files:
                        assert processor.process(Task(f, ("mfcc",))).row["status"] == "ok"
                else:
                    for path in paths:
                        (_librosa_one if name == "librosa" else _floor_one)(path)
                times[name].append(time.process_time() - start)
                print(f"  round {r} {name:<8} {times[name][-1]:7.2f} CPU s  {audio_s / times[name][-1]:7.1f}× real time", flush=True)
    best = {name: min(t) for name, t in times.items()}
    features = min(_features_only(processor, paths) for _ in range(args.rounds))
    per_file_ms = 1e3 * (best["audiokit"] - best["floor"] - features) / len(paths)
    return {
        "cpu_s": {k: round(v, 2) for k, v in best.items()},
        "realtime_per_core": {k: round(audio_s / v, 1) for k, v in best.items()},
        "speedup_over_librosa": round(best["librosa"] / best["audiokit"], 2),
        "audiokit_over_floor": round(best["audiokit"] / best["floor"], 2),
        # The MFCC alone, on signals decoded and resampled beforehand: the floor plus this is
        # what audiokit would cost with nothing else per file.
        "mfcc_only_cpu_s": round(features, 2),
        "floor_plus_mfcc_over_floor": round((best["floor"] + features) / best["floor"], 2),
        "rest_per_file_ms": round(per_file_ms, 2),
    }


def _features_only(processor, paths: list[str]) -> float:
    """CPU seconds of the MFCC extractor's stream over every file's resampled signal, in one
    push each (the signals are made outside the timing)."""
    extractor = processor.extractors["mfcc"]
    total = 0.0
    for path in paths:
        signal = np.ascontiguousarray(np.concatenate(list(_resampled(path))).T)
        start = time.process_time()
        stream = extractor.start(1, 22050)
        for _ in [*stream.push(signal), *stream.finish()]:
            pass
        total += time.process_time() - start
    return total


def chains(args) -> dict:
    """× real time per core of `-x mfcc`, the chain without loudness and the chain, A/B."""
    from audiokit.pipeline import Task

    chain = tuple(c.strip() for c in args.extractors.split(",") if c.strip())
    variants = {"mfcc": ("mfcc",), ",".join(chain): chain}
    if "loudness" in chain:
        rest = tuple(c for c in chain if c != "loudness")
        variants[",".join(rest)] = rest
    _, audio_s, files = _in_process_corpus(args)
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        processors = {name: _processor(os.path.join(tmp, str(i)), c) for i, (name, c) in enumerate(variants.items())}
        for name, c in variants.items():
            os.makedirs(os.path.join(tmp, str(list(variants).index(name))), exist_ok=True)
            processors[name].process(Task(files[0], c))  # first use: imports, caches
        names = list(variants)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.process_time()  # CPU seconds of this process: one thread works
                for f in files:
                    assert processors[name].process(Task(f, variants[name])).row["status"] == "ok"
                times[name].append(time.process_time() - start)
                print(f"  round {r} {name:<40} {times[name][-1]:7.2f} s  {audio_s / times[name][-1]:7.1f}× real time", flush=True)
    best = {name: min(t) for name, t in times.items()}
    result = {
        "audio_min": round(audio_s / 60, 1),
        "cpu_s": {k: round(v, 2) for k, v in best.items()},
        "realtime_per_core": {k: round(audio_s / v, 1) for k, v in best.items()},
        "over_mfcc": {k: round(v / best["mfcc"], 2) for k, v in best.items()},
    }
    if "loudness" in chain:
        rest = ",".join(c for c in chain if c != "loudness")
        result["loudness_adds_percent"] = round(100 * (best[",".join(chain)] / best[rest] - 1), 1)
        # Each round's own ratio (its runs are minutes apart at most): the spread the load gives.
        paired = [100 * (a / b - 1) for a, b in zip(times[",".join(chain)], times[rest])]
        result["loudness_adds_percent_per_round"] = [round(v, 1) for v in paired]
        result["loudness_adds_percent_median_round"] = round(float(np.median(paired)), 1)
    return result


# Where a worker's time goes: each stage is the own time (cProfile's tottime) of these functions.
STAGES = {
    "decode": ("soundfile.py:", "/av/", "decode.py:"),
    "downmix": ("stream.py:apply_channel_policy",),
    "resample": ("/soxr/", "resample.py:"),
    "framing": ("framing.py:", "_stride_tricks"),
    "window + power spectrum": ("spectrum.py:",),
    "FFT": ("pypocketfft",),
    "mel, dB, DCT": ("mel.py:", "cepstrum.py:", "frames.py:chunks"),
    "staging rows (Arrow IPC)": ("parts.py:", "arrays.py:", "frames.py:_batch", "pipeline.py:_with_file_id", "ipc", "compute.py"),
}


def profile(args) -> dict:
    """Profile what one worker does over the corpus and group its time by stage."""
    import cProfile
    import pstats

    from audiokit.pipeline import Task

    _, audio_s, files = _in_process_corpus(args)
    with tempfile.TemporaryDirectory() as tmp:
        processor = _processor(tmp)
        processor.process(Task(files[0], ("mfcc",)))  # imports and caches out of the way
        profiler = cProfile.Profile()
        profiler.enable()
        for f in files:
            processor.process(Task(f, ("mfcc",)))
        profiler.disable()
    seconds = {stage: 0.0 for stage in [*STAGES, "other"]}
    for (filename, _, name), (_, _, tottime, _, _) in pstats.Stats(profiler).stats.items():
        where = f"{filename}:{name}"
        stage = next((s for s, keys in STAGES.items() if any(k in where for k in keys)), "other")
        seconds[stage] += tottime
    total = sum(seconds.values())
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)  # what "other" holds, too
    for stage, t in seconds.items():
        print(f"  {stage:<26} {t:6.2f} s  {100 * t / total:5.1f} %")
    return {"profiled_s": round(total, 2), "audio_min": round(audio_s / 60, 1),
            "share_percent": {k: round(100 * v / total, 1) for k, v in seconds.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "audiokit-bench-corpus"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="run the 1 h / 10 h memory test instead")
    parser.add_argument("--hours", default="1,10", help="--memory: lengths of the long files, hours")
    parser.add_argument("--long-dir", default=os.path.join(tempfile.gettempdir(), "audiokit-bench-long"))
    parser.add_argument("--one-core", action="store_true", help="per-core cost of the three pipelines, in process")
    parser.add_argument("--profile", action="store_true", help="where a worker's time goes, by stage (cProfile)")
    parser.add_argument("--clips", type=int, help="throughput on this many 5-second clips (per-file overhead)")
    parser.add_argument("--engine", choices=["ray"], help="compare --engine ray with the local engine instead")
    parser.add_argument("--ray-address", help="with --engine ray: a running cluster (default: a local instance per run)")
    parser.add_argument("--scale", type=int, default=1, help="with --engine ray: a corpus this many times as long")
    parser.add_argument("-x", "--extractors", help="a chain to measure against -x mfcc (per core, in process)")
    parser.add_argument("--pipeline", choices=["librosa", "floor"], help=argparse.SUPPRESS)  # one timed run
    parser.add_argument("--paths-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:
        run_pipeline(args.pipeline, Path(args.paths_file).read_text().split("\n"), args.out, args.workers)
        return
    if args.memory:
        result = {"memory": memory(args)}
    elif args.one_core:
        result = {"one_core": one_core(args)}
    elif args.profile:
        result = {"profile": profile(args)}
    elif args.engine:
        result = {"engines": engines(args)}
    elif args.extractors:
        result = {"chains": chains(args)}
    else:
        result = {"throughput": throughput(args), "startup": startup(args)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
