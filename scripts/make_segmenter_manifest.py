"""Write the training manifest for the shipped segmenter: licence-allowed recordings only.

Rows (`path,label,group,license`) come from
- `../shared/data/devcorpus/manifest.csv` rows with `use == train+eval`,
- the extra recordings of folders that MANIFEST.md marks *train* (speechbrain, lhotse,
  pyAudioAnalysis),
- optionally, music of unpacked Debian game-music packages (`--debian DIR`, the folder where
  `dpkg-deb -x` put them; their licences are in each package's copyright file),
and never from a group that `../shared/eval/make_dev_mixes.py` keeps for dev (`DEV_GROUPS`).
Groups are repositories, and one speaker can reach two repositories (LJSpeech's single reader is
in the dev group TTS and was in lhotse's test files): the script refuses to write a manifest that
shares a source file or a speaker with the dev mixes' recordings (`overlap`).

usage: python scripts/make_segmenter_manifest.py OUT.csv [--data ../shared/data] [--debian DIR]
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib.util
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (or one level up, from a git worktree under wt/)
DEFAULT_DATA = next(
    (
        p / "shared" / "data"
        for p in (REPO.parent, REPO.parent.parent)
        if (p / "shared" / "data").is_dir()
    ),
    REPO.parent / "shared" / "data",
)
# singing stays its own label: it trains as music, but the trainer samples it more often (it is scarce)
LABELS = {"speech": "speech", "music": "music", "singing": "singing", "other": "noise"}

# Recordings outside devcorpus in folders marked *train*: (path under data/, label, group, licence)
TRAIN_FOLDERS = [
    ("speechbrain/tests/samples/ASR/spk1_snt1.wav", "speech", "speechbrain", "Apache-2.0"),
    ("speechbrain/tests/samples/ASR/spk1_snt2.wav", "speech", "speechbrain", "Apache-2.0"),
    ("speechbrain/tests/samples/ASR/spk2_snt1.wav", "speech", "speechbrain", "Apache-2.0"),
    ("speechbrain/tests/samples/single-mic/example1.wav", "speech", "speechbrain", "Apache-2.0"),
    ("speechbrain/tests/samples/noise/noise2.wav", "noise", "speechbrain", "Apache-2.0"),
    ("speechbrain/tests/samples/noise/noise3.wav", "noise", "speechbrain", "Apache-2.0"),
    ("lhotse/2412-153948-0000.flac", "speech", "lhotse", "CC-BY-4.0 (LibriSpeech)"),
    ("lhotse/libri-1088-134315-0000.wav", "speech", "lhotse", "CC-BY-4.0 (LibriSpeech)"),
    # not lhotse/LJ002-0020.wav: LJSpeech's one speaker reads the dev group TTS
    ("lhotse/common_voice_en_651325.mp3", "speech", "lhotse", "CC0-1.0 (Common Voice)"),
    ("lhotse/ES2011a.Headset-0-40s-46s.wav", "speech", "lhotse", "CC-BY-4.0 (AMI)"),
    ("pyAudioAnalysis/data/count.wav", "speech", "pyAudioAnalysis", "Apache-2.0"),
    ("pyAudioAnalysis/data/diarizationExample.wav", "speech", "pyAudioAnalysis", "Apache-2.0"),
    (
        "pyAudioAnalysis/data/100 BPM - Rhythm patterns - Salsa.mp3",
        "music",
        "pyAudioAnalysis",
        "Apache-2.0",
    ),
]
# Emotional speech (pyAudioAnalysis, Apache-2.0): varied voices and prosody.
TRAIN_GLOBS = [
    ("pyAudioAnalysis/data/speechEmotion/*.wav", "speech", "pyAudioAnalysis", "Apache-2.0")
]

DEBIAN_MUSIC = [
    (
        "wesnoth-1.16-music/usr/share/games/wesnoth/*/data/core/music/*.ogg",
        "wesnoth-music",
        "GPL-2+ (Debian copyright)",
    ),
    (
        "hyperrogue-music/usr/share/hyperrogue/music/*.ogg",
        "hyperrogue-music",
        "CC-BY-SA-3.0 (Debian copyright)",
    ),
    (
        "singularity-music/usr/share/games/singularity/music/*.ogg",
        "singularity-music",
        "CC-BY-SA-3.0 (Debian copyright)",
    ),
    # rock/metal backing tracks and their separate lead-guitar stems
    (
        "fretsonfire-songs-muldjord/usr/share/games/fretsonfire/data/songs/*/*/*.ogg",
        "fretsonfire-muldjord",
        "CC-BY-SA-3.0 (Debian copyright)",
    ),
    (
        "fretsonfire-songs-sectoid/usr/share/games/fretsonfire/data/songs/*/*/*.ogg",
        "fretsonfire-sectoid",
        "CC-BY-SA-3.0 (Debian copyright)",
    ),
    (
        "warzone2100-music/usr/share/games/warzone2100/music/**/*.opus",
        "warzone2100-music",
        "GPL-2+ (Debian copyright)",
    ),
    (
        "planetblupi-music-ogg/usr/share/planetblupi/music/*.ogg",
        "planetblupi-music",
        "GPL-3+ (Debian copyright)",
    ),
    (
        "extremetuxracer-data/usr/share/games/etr/music/*.ogg",
        "extremetuxracer-music",
        "GPL-2+ (Debian copyright)",
    ),
]

# Hyperrogue's sound effects that are animals, water, weather, machinery or impacts: noise.
# (Its jingles and character voices are left out.)
HYPERROGUE_NOISE = [
    "bull",
    "seen-frog1",
    "seen-frog2",
    "seen-frog3",
    "orb-frog",
    "seen-eagle",
    "seen-woof",
    "seen-snake",
    "mousesqueak",
    "message-roar",
    "message-troll",
    "seen-troll",
    "die-troll",
    "die-kraken",
    "seen-kraken",
    "splash1",
    "splash2",
    "seen-water",
    "steamhiss",
    "storm",
    "explosion",
    "fire",
    "closegate",
    "opengate",
    "trapdoor",
    "hit-crush1",
    "hit-crush2",
    "hit-crush3",
    "seen-sandworm",
    "seen-dragon",
    "seen-air",
    "seen-earth",
    "die-bomberbird",
    "die-vinebeast",
]
HYPERROGUE_SOUNDS = "hyperrogue-music/usr/share/hyperrogue/sounds/{}.ogg"
HYPERROGUE_SOUNDS_LICENSE = "CC-BY-SA-4.0 or CC-BY-3.0 per file (Debian copyright)"


def _dev_mixes_module(data: Path):
    path = data.parent / "eval" / "make_dev_mixes.py"
    spec = importlib.util.spec_from_file_location("make_dev_mixes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dev_groups(data: Path) -> set[str]:
    """The groups the dev mixes use, read from the shared script so the two never drift."""
    return set(_dev_mixes_module(data).DEV_GROUPS)


# Corpora whose speakers turn up in several repositories, named in a row's licence or notes.
CORPORA = ("LJSpeech", "LibriSpeech", "VCTK", "AISHELL", "VoxConverse", "Common Voice", "AMI")
LIBRISPEECH_ID = re.compile(r"(?:^|[^0-9])(\d{2,5})-(\d{2,6})-(\d{4})(?:[^0-9]|$)")


def identities(path: str, licence: str = "", notes: str = "", source: str = "") -> set[str]:
    """What a recording shares with any other copy of it or its speaker: its source file and,
    where known, (corpus, speaker)."""
    keys = {f"source:{source or Path(path).name}"}
    corpus = next((c for c in CORPORA if c.lower() in f"{licence} {notes} {path}".lower()), None)
    speaker = re.search(r"speaker=([^;,\s]+)", notes)
    if corpus == "LJSpeech":
        keys.add("speaker:LJSpeech/LJ")  # one reader
    elif speaker:  # speakers named within a corpus, else within the repository (owner/name)
        keys.add(f"speaker:{corpus or '/'.join(source.split('/')[:2])}/{speaker.group(1)}")
    elif corpus == "LibriSpeech" and (match := LIBRISPEECH_ID.search(Path(path).name)):
        keys.add(f"speaker:LibriSpeech/{match.group(1)}")
    return keys


def dev_identities(data: Path) -> dict[str, str]:
    """identity -> a dev recording that has it (every recording of the dev groups)."""
    module = _dev_mixes_module(data)
    by_file = {}
    with open(data / "devcorpus" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            by_file[os.path.join("devcorpus", r["file"])] = r
    found = {}
    for rel, _label, _group, _use in module.recordings("dev"):
        r = by_file.get(rel, {})
        source = f"{r['source_repo']}/{r['source_path']}" if r else rel
        for key in identities(rel, r.get("license", ""), r.get("notes", ""), source):
            found.setdefault(key, rel)
    return found


def overlap(rows: list[dict], dev: dict[str, str]) -> list[str]:
    """Training rows that share a source or a speaker with a dev recording, described."""
    return [
        f"{row['path']} and dev {dev[key]} ({key})"
        for row in rows
        for key in sorted(row["identities"])
        if key in dev
    ]


# More Debian packages outside ../shared/data, none of which ../shared/data excerpts, so the
# leave-sources-out folds can train on them without testing on them (`cv_segmenter.py
# --debian`; no shipped weights train on them, see segmenter-v3.md): (package, glob under the
# unpacked package, label, group, licence from the package's copyright file, a pattern of the
# file stems left out). Left out: sounds whose names say they are voices, jingles or notes.
_HEDGEWARS = "usr/share/games/hedgewars/Data"
_WARMUX = "usr/share/games/warmux"
_WESNOTH = "usr/share/games/wesnoth/1.16/data/core/sounds"
_KEEP_ALL = r"$^"
DEBIAN_MORE = [
    ("asterisk-prompt-fr-armelle", "usr/share/asterisk/sounds/**/*.gsm", "speech",
     "asterisk-prompt-fr-armelle", "BSD-style (2006 Michel Gutierrez; voice Armelle Desjardins)",
     _KEEP_ALL),
    ("asterisk-prompt-es-co", "usr/share/asterisk/sounds/**/*.gsm", "speech",
     "asterisk-prompt-es-co", "GPL-2", _KEEP_ALL),
    ("hedgewars-data", f"{_HEDGEWARS}/Music/*.ogg", "music", "hedgewars-music", "GPL-2", _KEEP_ALL),
    ("hedgewars-data", f"{_HEDGEWARS}/Sounds/*.ogg", "noise", "hedgewars-sounds",
     "GFDL-1.3 (Droplet*: CC-BY-SA-3.0 saugox)",
     r"[1-9][A-G]|hogchant3|ride_of_the_valkyries|Yoohoo|Kiss|Hellish|hell_.*|countdown\d|custom\d"
     r"|extratime|suddendeath|homerun|invulnerable|lowgravity|skip|switchhog|placed|CollectCrate"
     r"|BirdyLay"),
    ("warmux-data", f"{_WARMUX}/music/*/*.ogg", "music", "warmux-music", "GPL-2", _KEEP_ALL),
    ("warmux-data", f"{_WARMUX}/sound/default/weapons/*.ogg", "noise", "warmux-sounds", "GPL-2",
     r"disco_grenade_music|homerun"),
    ("warmux-data", f"{_WARMUX}/sound/default/misc/*.ogg", "noise", "warmux-sounds", "GPL-2",
     r"frog_music|victory|sherif|newcomer"),
    ("wesnoth-1.16-data", f"{_WESNOTH}/ambient/*.ogg", "noise", "wesnoth-ambient", "GPL-2+",
     _KEEP_ALL),
    # cries of people and people-like creatures: not noise to a listener
    ("wesnoth-1.16-data", f"{_WESNOTH}/*.*", "noise", "wesnoth-sounds", "GPL-2+",
     r"(human|dwarf|elf|orc|goblin|ogre|troll|lich|zombie|mermaid|mermen|naga|groan|ugg|wail"
     r"|fanfare).*"),
]


def manifest_rows(data: Path, debian: Path | None) -> list[dict]:
    excluded = dev_groups(data)
    rows = []
    with open(data / "devcorpus" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["use"] != "train+eval" or r["group"] in excluded:
                continue
            rows.append(
                {
                    "path": str(data / "devcorpus" / r["file"]),
                    "label": LABELS[r["label"]],
                    "group": r["group"],
                    "license": r["license"],
                    "identities": identities(
                        r["file"], r["license"], r["notes"], f"{r['source_repo']}/{r['source_path']}"
                    ),
                }
            )
    for rel, label, group, licence in TRAIN_FOLDERS:
        if group not in excluded and (data / rel).exists():
            rows.append(
                {"path": str(data / rel), "label": label, "group": group, "license": licence,
                 "identities": identities(rel, licence, source=rel)}
            )
    for pattern, label, group, licence in TRAIN_GLOBS:
        for path in sorted(glob.glob(str(data / pattern))):
            rel = os.path.relpath(path, data)
            rows.append({"path": path, "label": label, "group": group, "license": licence,
                         "identities": identities(rel, licence, source=rel)})
    if debian is not None:
        for pattern, group, licence in DEBIAN_MUSIC:
            for path in sorted(glob.glob(str(debian / pattern), recursive=True)):
                rows.append({"path": path, "label": "music", "group": group, "license": licence,
                             "identities": identities(path, licence)})
        for name in HYPERROGUE_NOISE:
            path = debian / HYPERROGUE_SOUNDS.format(name)
            if path.exists():
                rows.append(
                    {
                        "path": str(path),
                        "label": "noise",
                        "group": "hyperrogue-sounds",
                        "license": HYPERROGUE_SOUNDS_LICENSE,
                        "identities": identities(str(path)),
                    }
                )
    return rows


def debian_more_rows(debian: Path) -> list[dict]:
    """DEBIAN_MORE's recordings under `debian` (one folder per package, as `dpkg-deb -x` put
    them: `debian/PACKAGE/usr/...`)."""
    rows = []
    for package, pattern, label, group, licence, left_out in DEBIAN_MORE:
        for path in sorted(glob.glob(str(debian / package / pattern), recursive=True)):
            if re.fullmatch(left_out, Path(path).stem) or not path.endswith((".ogg", ".wav", ".gsm")):
                continue
            rows.append(
                {
                    "path": path,
                    "label": label,
                    "group": group,
                    "license": f"{licence} ({package}, Debian copyright)",
                    "identities": identities(path, licence),
                }
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--debian", type=Path, default=None, help="folder with unpacked Debian music packages"
    )
    args = ap.parse_args()
    rows = manifest_rows(args.data.resolve(), args.debian)
    shared = overlap(rows, dev_identities(args.data.resolve()))
    if shared:
        print("refusing: training and dev recordings share a source or a speaker:", file=sys.stderr)
        for line in shared:
            print(f"  {line}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group", "license"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    by_label: dict[str, int] = {}
    for r in rows:
        by_label[r["label"]] = by_label.get(r["label"], 0) + 1
    print(
        f"{len(rows)} recordings from {len({r['group'] for r in rows})} groups: {by_label}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
