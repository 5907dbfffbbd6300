"""Leave-sources-out cross-validation of a segmenter training recipe.

Every recording that may train shipped weights (`data_rows`: devcorpus `use = train+eval` minus
the dev mixes' groups, the *train* folders of MANIFEST.md and `train-extra/`) is put in one of
K folds by its `group` (never by file; groups are dealt to folds per label, largest first, so
every fold holds speech, music and noise). For each fold, test mixes are built from that fold's
sources only, the way the held-out set is described: read speech and dialogue, speech over a
music bed 3–20 dB down, music, noise (animals, nature, machines) between and under speech,
silences, each mix stored at 8–48 kHz as WAV, FLAC, Ogg Vorbis or MP3, decoded and resampled
to 16 kHz. A recipe is trained K times, each time on programmes built from the other folds
only, and scored on the held-out fold with `../shared/eval/seg_score.py`'s semantics (10 ms
frames, 0.25 s collar, noise and silence folded to "other").

To keep this affordable on a shared machine, each training programme draws on the groups of
one fold only and its features are cached: training for test fold k takes the cached
programmes of every other fold. Decoded audio (16 kHz) is cached per source file.

usage: python scripts/cv_segmenter.py --recipe v2|v3-data|v3-aug|v3-noise|v3-sing [--folds 4]
       [--cache /work/cache15] [--programmes-per-fold 25] [--members 2] [--hidden 96,48]
       [--conv CHANNELS] [--draws N] [--network-seeds S,...] [--smoothing JSON]
       [--average-with RECIPE[:HIDDEN[:SEED[:MEMBERS[:EPOCHS]]]]] [--conv-share 0.5]
       [--class-offsets SPEECH,MUSIC,OTHER] [--json OUT.json]
       [--debian DIR [--debian-programmes 25]] [--train-folds N]
`--debian` adds make_segmenter_manifest.DEBIAN_MORE's packages (unpacked under DIR) as
train-only sources: every fold also trains on programmes drawn from them, no fold tests on them.
segmenter-v3's row: `--recipe v3-sing --hidden 192,96 --average-with v2:96,48` after
`--recipe v2`. segmenter-v4's: `--recipe v3-sing --conv 64 --members 3 --epochs 20 --draws 4
--network-seeds 0,7 --class-offsets=-0.75,0,0` with its smoothing (segmenter-v4.md).
       python scripts/cv_segmenter.py --write-manifest OUT.csv   (rows for train_segmenter.py)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import make_segmenter_manifest  # noqa: E402
import train_segmenter as ts  # noqa: E402

from audiokit.extractors.segments import LABELS, SegmentsParams, smooth  # noqa: E402
from audiokit.models.segmenter import (  # noqa: E402
    DECISION_SECONDS,
    FrameClassifier,
    decisions_of,
)

DATA = make_segmenter_manifest.DEFAULT_DATA
SR = ts.SR
# LJSpeech is a dev-mix speaker (devcorpus group TTS); lhotse's LJSpeech sample would put the
# same voice on both sides, so no training or CV fold uses it.
EXCLUDED_PATHS = ("lhotse/LJ002-0020.wav",)
# The Debian packages segmenter-v2 trained on (whole packages); train-extra holds excerpts of
# them. The "v2" recipe's data is v2's manifest plus these train-extra groups.
V2_DEBIAN_PREFIXES = (
    "wesnoth-music",
    "hyperrogue-",
    "singularity-",
    "warzone2100-",
    "planetblupi-music",
)


# ---------------------------------------------------------------- data


def data_rows(data: Path = DATA) -> list[dict]:
    """All licence-allowed labelled recordings of `data`: path, label, group, license, in_v2."""
    rows = []
    for r in make_segmenter_manifest.manifest_rows(data, None):
        if any(r["path"].endswith(p) for p in EXCLUDED_PATHS):
            continue
        rows.append({**r, "in_v2": True})
    with open(data / "train-extra" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "path": str(data / "train-extra" / r["file"]),
                    "label": ts.LABEL_OF[r["label"]] if r["label"] != "singing" else "singing",
                    "group": "x:" + r["group"],
                    "license": r["license"],
                    "in_v2": r["group"].startswith(V2_DEBIAN_PREFIXES),
                }
            )
    return rows


def debian_rows(debian: Path) -> list[dict]:
    """make_segmenter_manifest.DEBIAN_MORE's recordings (unpacked under `debian`): no group of
    `data_rows` holds them, so the folds train on them and never test on them."""
    return [{**r, "group": "deb:" + r["group"], "in_v2": False}
            for r in make_segmenter_manifest.debian_more_rows(debian)]


# the fold of the groups every fold trains on and none tests on
TRAIN_ONLY = -1


def train_only_name(fold_of: dict[str, int]) -> str:
    """Names what is cached from the train-only groups by those groups (DEBIAN_MORE may change)."""
    groups = sorted(g for g, k in fold_of.items() if k == TRAIN_ONLY)
    return "deb-" + hashlib.sha1(" ".join(groups).encode()).hexdigest()[:8]


def decoded(path: str, cache: Path) -> np.ndarray:
    """The whole recording, mono 16 kHz float32, decoded once and kept in `cache`."""
    key = hashlib.sha1(path.encode()).hexdigest()[:16]
    target = cache / "audio" / f"{key}.npy"
    if target.exists():
        return np.load(target)
    from audiokit.audio.decode import open_audio

    with open_audio(path) as reader:
        rate = reader.info.sample_rate
        blocks = [b.mean(axis=1) for b in reader.blocks(1 << 18)]
    y = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    if rate != SR and len(y):
        y = soxr.resample(y, rate, SR, quality="HQ").astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, y)
    return y


def excerpt(y: np.ndarray, rng, max_s: float = ts.MAX_RECORDING_S) -> np.ndarray:
    n = int(max_s * SR)
    if len(y) > n:
        start = int(rng.integers(0, len(y) - n))
        y = y[start : start + n]
    return ts.trim(y)


def pools_of(rows: list[dict], cache: Path, rng) -> dict:
    """`pools[label][group]` → list of 16 kHz recordings (long ones as one random excerpt)."""
    pools: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        try:
            y = excerpt(decoded(r["path"], cache), rng)
        except Exception as exc:  # noqa: BLE001 (a broken file should not stop a study)
            print(f"skip {r['path']}: {exc}", file=sys.stderr)
            continue
        if len(y) >= SR // 4:
            pools[r["label"]][r["group"]].append(y)
    return pools


def assign_folds(rows: list[dict], folds: int, cache: Path) -> dict[str, int]:
    """group → fold: per label (a group's majority label), largest groups first (by decoded
    seconds, at most 45 s a recording as training uses them), each onto the fold with the
    fewest seconds of that label so far."""
    seconds: dict = defaultdict(float)
    label_of: dict = {}
    for r in rows:
        seconds[r["group"]] += min(len(decoded(r["path"], cache)) / SR, ts.MAX_RECORDING_S)
        label_of.setdefault(r["group"], defaultdict(int))[r["label"]] += 1
    majority = {g: max(c, key=c.get) for g, c in label_of.items()}
    fold_of: dict[str, int] = {}
    for label in ("speech", "music", "singing", "noise"):
        groups = sorted((g for g in majority if majority[g] == label), key=lambda g: (-seconds[g], g))
        load = [0.0] * folds
        for i, g in enumerate(groups):
            k = min(range(folds), key=lambda j: (load[j], (j - i) % folds))
            fold_of[g] = k
            load[k] += seconds[g]
    return fold_of


# ---------------------------------------------------------------- held-out-style test mixes

TEST_KINDS = ["speech", "speech_over_music", "music", "noise", "silence", "speech_under_noise"]
TEST_WEIGHTS = [0.27, 0.18, 0.30, 0.12, 0.06, 0.07]
TEST_SPANS = {
    "speech": (5, 25),
    "speech_over_music": (5, 20),
    "music": (10, 40),
    "noise": (3, 15),
    "silence": (1, 4),
    "speech_under_noise": (5, 15),
}
STORED = [(8000, "WAV"), (16000, "FLAC"), (22050, "MP3"), (44100, "OGG"), (48000, "WAV"),
          (32000, "MP3"), (44100, "FLAC"), (11025, "WAV")]


def test_mix(rng, pools, seconds: float) -> tuple[np.ndarray, list, list]:
    """A mix, its labels `(start, end, label)` and its parts `(start, end, kind, snr_db)`
    (the kind as built: singing apart from music, speech over music or noise with the bed's
    level under the voice; for the per-kind report)."""
    parts, labels, kinds, t, prev = [], [], [], 0.0, None
    while t < seconds:
        kind = TEST_KINDS[rng.choice(len(TEST_KINDS), p=TEST_WEIGHTS)]
        if kind == prev:
            continue
        prev = kind
        n = int(rng.uniform(*TEST_SPANS[kind]) * SR)
        label = "speech" if kind.startswith("speech") else kind
        built, snr = kind, None
        if kind.startswith("speech"):
            y = ts.piece(rng, pools["speech"], n / SR, pauses=True)
        elif kind == "music":
            if pools["singing"] and rng.random() < 0.2:
                y = np.resize(ts.piece(rng, pools["singing"], n / SR, pauses=False), n)
                built = "singing"
            else:
                y = ts.piece(rng, pools["music"], n / SR, pauses=False)
        elif kind == "noise":
            y = np.resize(ts.piece(rng, pools["noise"], n / SR, pauses=True), n)
        else:
            y = np.zeros(n, np.float32)
        if kind == "speech_over_music":
            bed = np.resize(ts.piece(rng, pools["music"], n / SR, pauses=False), len(y))
            snr = rng.uniform(3, 20)
            y = y + bed * (ts.rms(y) / ts.rms(bed)) * 10 ** (-snr / 20)
        if kind == "speech_under_noise":
            under = np.resize(ts.piece(rng, pools["noise"], n / SR, pauses=True), len(y))
            snr = rng.uniform(5, 20)
            y = y + under * (ts.rms(y) / ts.rms(under)) * 10 ** (-snr / 20)
        if kind != "silence":
            y = y / (np.abs(y).max() + 1e-9) * 10 ** (-rng.uniform(1, 18) / 20)
        elif rng.random() < 0.5:
            y = ts.coloured_noise(rng, n) * 10 ** (rng.uniform(-90, -70) / 20)
        y = ts.fade(y.astype(np.float32))
        parts.append(y)
        labels.append((t, t + len(y) / SR, label))
        kinds.append((t, t + len(y) / SR, built, snr))
        t += len(y) / SR
    return np.concatenate(parts).astype(np.float32), labels, kinds


def stored_and_decoded(rng, y: np.ndarray) -> np.ndarray:
    """The mix as a file at another rate and codec, decoded and resampled back to 16 kHz."""
    rate, fmt = STORED[rng.integers(len(STORED))]
    z = soxr.resample(y, SR, rate, quality="HQ") if rate != SR else y
    z = z / max(1.0, float(np.abs(z).max()) + 1e-6)
    buffer = io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "MP3": "MPEG_LAYER_III", "OGG": "VORBIS"}[fmt]
    with sf.SoundFile(buffer, "w", rate, 1, format=fmt, subtype=subtype) as f:
        for start in range(0, len(z), rate * 10):
            f.write(z[start : start + rate * 10])
    buffer.seek(0)
    back, _ = sf.read(buffer, dtype="float32")
    back = soxr.resample(back, rate, SR, quality="HQ") if rate != SR else back
    return np.pad(back, (0, max(0, len(y) - len(back))))[: len(y)].astype(np.float32)


def test_set(rows, fold_of, fold, cache: Path, mixes: int, seed: int) -> list[dict]:
    target = cache / "cv" / f"test-f{fold}of{max(fold_of.values()) + 1}-n{mixes}-s{seed}.npz"
    if target.exists():
        with np.load(target, allow_pickle=True) as d:
            cached = list(d["mixes"])
        if all("frames" in m for m in cached):  # else cached before frames were kept: rebuild
            return cached
    rng = np.random.default_rng([seed, fold, 7])
    pools = pools_of([r for r in rows if fold_of[r["group"]] == fold], cache, rng)
    out = []
    for _ in range(mixes):
        y, labels, parts = test_mix(rng, pools, rng.uniform(90, 150))
        y = stored_and_decoded(rng, y)
        decisions = decisions_of(y, frames=True)
        out.append({"features": decisions.features, "level": decisions.level,
                    "frames": decisions.frames, "labels": labels, "parts": parts,
                    "seconds": len(y) / SR})
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, mixes=np.array(out, dtype=object))
    return out


# ---------------------------------------------------------------- training programmes


def programme_set(rows, fold_of, fold, recipe: str, cache: Path, count: int, seed: int,
                  conv: bool = False):
    """`count` training programmes built from one fold's groups: the MLPs' `(x, y)` or, with
    `conv`, the ConvNets' sequences (the same programmes)."""
    folds = max(fold_of.values()) + 1
    name = train_only_name(fold_of) if fold == TRAIN_ONLY else f"f{fold}of{folds}"
    target = cache / "cv" / f"{'seq' if conv else 'train'}-{recipe}-{name}-p{count}-s{seed}.npz"
    if target.exists():
        with np.load(target) as d:
            if conv:
                return [(d[f"frames{i}"], d[f"target{i}"]) for i in range(int(d["count"]))]
            return d["x"], d["y"]
    v2_only = RECIPES[recipe]["data"] == "v2"
    use = [r for r in rows if fold_of[r["group"]] == fold and (r["in_v2"] or not v2_only)]
    rng = np.random.default_rng([seed, fold % 1000, 11])  # TRAIN_ONLY seeds as 999
    pools = pools_of(use, cache, rng)
    configure(recipe)
    target.parent.mkdir(parents=True, exist_ok=True)
    if conv:
        sequences, _ = ts.build_sequences(rng, pools, count, 1)
        np.savez(target, count=len(sequences), **{f"frames{i}": f for i, (f, _) in enumerate(sequences)},
                 **{f"target{i}": t for i, (_, t) in enumerate(sequences)})
        return sequences
    x, y, _ = ts.build_set(rng, pools, count, 1)
    np.savez(target, x=x, y=y)
    return x, y


# Recipes: which data (v2's sources or all) and train_segmenter.py's programme knobs.
RECIPES = {
    "v2": {"data": "v2", "synthetic_music": 0.15},
    "v3-data": {"data": "all", "synthetic_music": 0.15},
    "v3-aug": {
        "data": "all",
        "synthetic_music": 0.15,
        "bed_snr": (3.0, 20.0),
        "telephone": 0.15,
        "noise_under": 0.25,
        "music_shift": 0.3,
    },
    # class balance: more noise pieces, mostly real recordings
    "v3-noise": {
        "data": "all",
        "synthetic_music": 0.15,
        "real_noise": 0.8,
        "kind_weights": (0.28, 0.26, 0.20, 0.18, 0.08),
    },
    # sung music: the real singing pool twice as often, more synthetic voices
    "v3-sing": {"data": "all", "synthetic_music": 0.25, "singing": 0.4},
}


def configure(recipe: str) -> None:
    """Set train_segmenter.py's programme knobs for `recipe` (unnamed knobs: its defaults)."""
    knobs = RECIPES[recipe]
    ts.SYNTH_MUSIC[0] = knobs.get("synthetic_music", 0.0)
    ts.SPEECH_PERTURB[0] = knobs.get("speech_perturb", 0.0)
    ts.AUGMENT.update(
        bed_snr=knobs.get("bed_snr", (5.0, 20.0)),
        telephone=knobs.get("telephone", 0.0),
        noise_under=knobs.get("noise_under", 0.0),
        music_shift=knobs.get("music_shift", 0.0),
        real_noise=knobs.get("real_noise", 0.5),
        singing=knobs.get("singing", 0.2),
    )
    ts.KIND_WEIGHTS[:] = knobs.get("kind_weights", (0.30, 0.28, 0.20, 0.12, 0.10))


# ---------------------------------------------------------------- scoring


def load_score_module():
    path = DATA.parent / "eval" / "seg_score.py"
    spec = importlib.util.spec_from_file_location("seg_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoothing(overrides: str = "{}") -> dict:
    """The `segments` extractor's smoothing parameters: its defaults, then `overrides` (JSON)."""
    return {**dataclasses.asdict(SegmentsParams()), **json.loads(overrides)}


def segments_of(classifier: FrameClassifier, mix: dict, params: dict) -> list:
    probs = classifier.probabilities(mix["features"], mix["frames"])
    segs, _ = smooth(
        probs,
        mix["level"],
        switch_penalty=params["switch_penalty"],
        silence_db=params["silence_db"],
        max_pause_frames=round(params["max_pause_s"] / DECISION_SECONDS),
        min_frames=round(params["min_segment_s"] / DECISION_SECONDS),
    )
    out = []
    for start, end, label in segs:
        start_s = 0.0 if start == 0 else (start - 0.5) * DECISION_SECONDS
        end_s = mix["seconds"] if end == len(probs) else (end - 0.5) * DECISION_SECONDS
        out.append((start_s, min(end_s, mix["seconds"]), LABELS[label]))
    return out


def kind_of(part) -> str:
    """A test-mix part's row in the per-kind report: its kind, and for speech over a bed the
    band of the bed's level under the voice."""
    _, _, kind, snr = part
    if snr is None:
        return kind
    low, high = next((lo, hi) for lo, hi in ((14, 20), (8, 14), (3, 8)) if snr >= lo)
    return f"{kind} {low}-{high} dB"


def score_fold(classifier, mixes, params, scorer) -> tuple[dict, np.ndarray, dict]:
    """Scores, the confusion of 10 ms frames outside the collar (rows: reference speech /
    music / other) and, per part kind, how many frames the segments call speech / music /
    other (the collar left out at both ends of each part)."""
    ref = {f"m{i}": m["labels"] for i, m in enumerate(mixes)}
    pred = {f"m{i}": segments_of(classifier, m, params) for i, m in enumerate(mixes)}
    _, total = scorer.score(ref, pred)
    confusion = np.zeros((3, 3), dtype=np.int64)  # rows: reference speech/music/other
    by_kind: dict = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    for (key, rsegs), mix in zip(ref.items(), mixes):
        n = int(round(rsegs[-1][1] / scorer.HOP))
        r, h = scorer.frames(rsegs, n), scorer.frames(pred[key], n)
        mask = np.ones(n, dtype=bool)
        for s, e, _ in rsegs:
            for b in (s, e):
                mask[max(0, int((b - scorer.COLLAR) / scorer.HOP)) : int((b + scorer.COLLAR) / scorer.HOP)] = False
        np.add.at(confusion, (r[mask], h[mask]), 1)
        for part in mix["parts"]:
            lo = int((part[0] + scorer.COLLAR) / scorer.HOP)
            hi = min(n, int((part[1] - scorer.COLLAR) / scorer.HOP))
            if hi > lo:
                by_kind[kind_of(part)] += np.bincount(h[lo:hi], minlength=3)[:3]
    return total, confusion, dict(by_kind)


def audit_groups(rows, fold_of, networks: dict, cache: Path, loud_db: float = -50.0) -> list[dict]:
    """Each group's recordings (their first two minutes) through the networks of the fold that
    never trained on them: the share of loud decisions called speech / music / noise, lowest
    agreement with the group's label first. A labelled source the networks of every other
    source call something else is worth a listen: a mislabelled one teaches the wrong thing
    and is scored wrong."""
    index = {"speech": 0, "music": 1, "singing": 1, "noise": 2}
    calls: dict = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    label_of, seconds = {}, defaultdict(float)
    for r in rows:
        y = decoded(r["path"], cache)[: 120 * SR]
        if len(y) < SR // 2:
            continue
        network = networks[fold_of[r["group"]]]
        decisions = decisions_of(y, frames=bool(network.convnets))
        called = network.probabilities(decisions.features, decisions.frames)
        calls[r["group"]] += np.bincount(called.argmax(axis=1)[decisions.level > loud_db], minlength=3)
        label_of[r["group"]] = r["label"]
        seconds[r["group"]] += len(y) / SR
    out = []
    for group, counts in calls.items():
        share = counts / max(counts.sum(), 1)
        out.append({"group": group, "label": label_of[group], "fold": fold_of[group],
                    "minutes": round(seconds[group] / 60, 1),
                    "agreement": round(float(share[index[label_of[group]]]), 3),
                    "called": share.round(3).tolist()})
    return sorted(out, key=lambda g: g["agreement"])


def saved_weights(
    args, recipe: str, hidden: str, fold: int, extra: str = "", seed: int | None = None
) -> Path:
    """Where the networks a recipe trained for one test fold (`extra`: and on programmes of
    the train-only sources, named by them) are kept."""
    seed = args.seed if seed is None else seed
    return args.cache / "cv" / (
        f"weights-{recipe}{extra}-f{fold}of{args.folds}-p{args.programmes_per_fold}"
        f"-m{args.members}-e{args.epochs}-h{hidden.replace(',', '_')}-s{seed}.npz"
    )


def save_weights(weights: list[dict], target) -> None:
    flat = {"version": np.array("cv"), "n_members": np.array(len(weights))}
    for j, w in enumerate(weights):
        flat |= {f"m{j}_{k}": v for k, v in w.items()}
    np.savez(target, **flat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="v3-data")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path("/work/cache15"))
    ap.add_argument("--programmes-per-fold", type=int, default=25)
    ap.add_argument("--test-mixes", type=int, default=6)
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--hidden", default="96,48")
    ap.add_argument("--conv", type=int, default=0, metavar="CHANNELS",
                    help="train ConvNets of this width over the frames instead of MLPs")
    ap.add_argument("--conv-share", type=float, default=0.5,
                    help="with --average-with, the ConvNets' share of MLPs and ConvNets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=1,
                    help="train on this many draws of programmes per fold (seeds SEED, SEED+1, ...): "
                         "more hours of the same sources")
    ap.add_argument("--network-seeds", default=None, metavar="S,...",
                    help="train --members networks per seed on the same programmes and average "
                         "them all (default: --seed)")
    ap.add_argument("--class-offsets", default="0,0,0", metavar="SPEECH,MUSIC,OTHER",
                    help="added to the fold networks' log-probabilities before smoothing")
    ap.add_argument("--only-fold", type=int, default=None)
    ap.add_argument("--train-folds", type=int, default=None, metavar="N",
                    help="train on the N folds after the test fold only (a learning curve: how "
                         "the figures grow with the number of sources)")
    ap.add_argument("--smoothing", default="{}", help="JSON: segments parameters for scoring")
    ap.add_argument(
        "--average-with",
        action="append",
        default=[],
        metavar="RECIPE[:HIDDEN[:SEED[:MEMBERS[:EPOCHS]]]]",
        help="also average the kept networks of another run (segmenter-v3: v2:96,48; HIDDEN "
             "cN: ConvNets of width N; MEMBERS, EPOCHS: that run's, if not this one's)",
    )
    ap.add_argument(
        "--debian",
        type=Path,
        default=None,
        help="unpacked Debian packages (make_segmenter_manifest.DEBIAN_MORE): train-only sources",
    )
    ap.add_argument("--debian-programmes", type=int, default=25,
                    help="programmes drawn from the --debian sources, added to every fold's training")
    ap.add_argument("--audit", action="store_true",
                    help="run every group through the fold networks that never saw it (trained "
                         "or kept as for scoring) and list the groups by agreement with their label")
    ap.add_argument("--write-manifest", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = data_rows()
    extra = debian_rows(args.debian) if args.debian else []
    if args.write_manifest:
        rows += extra
        with open(args.write_manifest, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "label", "group", "license"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
        print(f"{len(rows)} recordings, {len({r['group'] for r in rows})} groups", file=sys.stderr)
        return 0
    fold_of = assign_folds(rows, args.folds, args.cache)
    fold_of |= {r["group"]: TRAIN_ONLY for r in extra}
    rows += extra
    scorer = load_score_module()
    params = smoothing(args.smoothing)
    try:
        offsets = ts.parse_class_offsets(args.class_offsets)
    except ValueError as exc:
        ap.error(f"--class-offsets: {exc}")
    network_seeds = [int(v) for v in args.network_seeds.split(",")] if args.network_seeds else [args.seed]
    hidden = tuple(int(h) for h in args.hidden.split(","))
    results, networks = [], {}
    began = time.time()
    for fold in range(args.folds) if args.only_fold is None or args.audit else [args.only_fold]:
        # the other folds, or (--train-folds N, a learning curve) the N after this one, with as
        # many programmes in all: fewer sources, the same hours of training audio
        if args.train_folds:
            train_folds = [(fold + i) % args.folds for i in range(1, args.train_folds + 1)]
        else:
            train_folds = [k for k in range(args.folds) if k != fold]
        per_fold = round(args.programmes_per_fold * (args.folds - 1) / len(train_folds))
        sets = [
            programme_set(rows, fold_of, k, args.recipe, args.cache, per_fold, args.seed + draw, args.conv)
            for draw in range(args.draws)
            for k in train_folds
        ]
        if extra:
            sets.append(programme_set(rows, fold_of, TRAIN_ONLY, args.recipe, args.cache,
                                      args.debian_programmes, args.seed, args.conv))
        if args.conv:
            sequences = sum(sets, [])
            train_frames = sum(int((target >= 0).sum()) for _, target in sequences)
        else:
            x = np.concatenate([s[0] for s in sets])
            y = np.concatenate([s[1] for s in sets])
            train_frames = len(x)
        # trained networks are kept, so other smoothing settings rescore without retraining
        members = []
        for network_seed in network_seeds:
            saved = saved_weights(
                args, args.recipe, f"c{args.conv}" if args.conv else args.hidden, fold,
                (f"-{train_only_name(fold_of)}x{args.debian_programmes}" if extra else "")
                + (f"-t{args.train_folds}" if args.train_folds else "")
                + (f"-d{args.draws}" if args.draws > 1 else "")
                + (f"-n{network_seed}" if network_seed != args.seed else ""),
            )
            if not saved.exists():
                weights = []
                for member in range(args.members):
                    seed = network_seed + 100 * member
                    if args.conv:
                        w, _ = ts.train_conv(sequences, channels=args.conv, epochs=args.epochs, seed=seed)
                    else:
                        w, _ = ts.train(x, y, x[:2000], y[:2000], hidden=hidden, epochs=args.epochs,
                                        seed=seed)
                    weights.append(w)
                save_weights(weights, saved)
            members += FrameClassifier.load(saved).members
        classifier = FrameClassifier(tuple(members), "cv", args.conv_share)
        for spec in args.average_with:
            # another run's networks for this fold (run it first), averaged in
            other_recipe, other_hidden, other_seed, other_members, other_epochs = (
                spec.split(":") + [""] * 4
            )[:5]
            other_run = argparse.Namespace(**{
                **vars(args),
                "members": int(other_members or args.members),
                "epochs": int(other_epochs or args.epochs),
            })
            other = FrameClassifier.load(saved_weights(
                other_run, other_recipe, other_hidden or "96,48", fold,
                seed=int(other_seed) if other_seed else args.seed,
            ))
            classifier = FrameClassifier(classifier.members + other.members, "cv", args.conv_share)
        classifier = dataclasses.replace(classifier, class_offsets=offsets)
        if args.audit:
            networks[fold] = classifier
            continue
        mixes = test_set(rows, fold_of, fold, args.cache, args.test_mixes, 1234)
        total, confusion, by_kind = score_fold(classifier, mixes, params, scorer)
        total["fold"] = fold
        total["test_minutes"] = round(sum(m["seconds"] for m in mixes) / 60, 1)
        total["train_frames"] = train_frames
        total["confusion"] = confusion.tolist()
        total["by_kind"] = {k: v.tolist() for k, v in by_kind.items()}
        results.append(total)
        print(
            f"fold {fold}: acc {total['accuracy']:.4f} speech F1 {total['speech_f1']:.4f} "
            f"music F1 {total['music_f1']:.4f} ({total['test_minutes']} min, "
            f"{time.time() - began:.0f} s)",
            file=sys.stderr,
        )
    if args.audit:
        groups = audit_groups(rows, fold_of, networks, args.cache)
        print("agreement  group                                  label    fold  minutes  called s / m / n",
              file=sys.stderr)
        for g in groups:
            called = " / ".join(f"{c:.2f}" for c in g["called"])
            print(f"{g['agreement']:9.2f}  {g['group']:38s} {g['label']:8s} {g['fold']:4d} {g['minutes']:8.1f}"
                  f"  {called}", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(groups, indent=1))
        return 0
    summary = {"recipe": args.recipe, "debian_programmes": args.debian_programmes if extra else 0,
               "train_folds": args.train_folds or args.folds - 1, "folds": results}
    for key in ("accuracy", "speech_f1", "music_f1"):
        values = np.array([r[key] for r in results])
        summary[key] = {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4),
                        "min": round(float(values.min()), 4), "max": round(float(values.max()), 4)}
    confusion = np.sum([r["confusion"] for r in results], axis=0)
    summary["confusion_rows"] = (confusion / confusion.sum(axis=1, keepdims=True)).round(3).tolist()
    kinds: dict = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    for r in results:
        for kind, counts in r["by_kind"].items():
            kinds[kind] += counts
    summary["by_kind"] = {
        k: {"seconds": round(int(v.sum()) * scorer.HOP, 1), "called": (v / max(v.sum(), 1)).round(3).tolist()}
        for k, v in sorted(kinds.items())
    }
    print("part kind (all folds)            seconds   called speech / music / other", file=sys.stderr)
    for kind, row in summary["by_kind"].items():
        called = " / ".join(f"{c:.3f}" for c in row["called"])
        print(f"  {kind:30s} {row['seconds']:8.1f}   {called}", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("folds", "by_kind")}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
