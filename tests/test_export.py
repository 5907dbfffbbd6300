"""`audiokit export`: every format through the CLI, read back and compared with the tables."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import audiokit
from audiokit.export import read_rttm
from tests.conftest import run_cli, run_json, write_audio


def tone_silence_noise(sr: int, *, reverse: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(3 * sr) / sr
    # 3 s of silence: longer than the segments' default min_segment_s (2 s), so it stays a segment
    parts = [0.4 * np.sin(2 * np.pi * 440 * t), np.zeros(3 * sr), 0.3 * rng.standard_normal(3 * sr)]
    return np.concatenate(parts[::-1] if reverse else parts).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Files with several segments each, a stereo file analysed per channel, a name with spaces."""
    root = tmp_path_factory.mktemp("export")
    audio = root / "audio"
    mono = tone_silence_noise(16000)
    write_audio(audio / "in dir" / "mix one.wav", mono[:, None], 16000)
    write_audio(audio / "music" / "st.flac", np.stack([mono, tone_silence_noise(16000, reverse=True)], axis=1), 16000)
    write_audio(audio / "music" / "short.wav", mono[: 16000 * 2, None], 16000)
    (audio / "bad.wav").write_bytes(b"not audio at all")
    out = root / "out"
    code, summary, err = run_json(
        "extract", str(audio), "-o", str(out), "-x", "mfcc,spectral,segments", "--set", "audio.channels=each"
    )
    assert code == 1 and summary["failed"] == 1, err
    return out


def all_segments(out: Path) -> list[dict]:
    ds = audiokit.open(str(out))
    rows = []
    for row in sorted(ds.files.to_pylist(), key=lambda r: r["relpath"]):
        for s in ds.segments(row["relpath"]).to_pylist():
            rows.append({"relpath": row["relpath"], **s})
    return rows


def assert_same_segments(read: list[dict], table: list[dict]) -> None:
    assert len(read) == len(table) > 6
    for got, want in zip(read, table):
        assert got["relpath"] == want["relpath"] and got["channel"] == want["channel"] and got["label"] == want["label"]
        assert got["start_s"] == pytest.approx(want["start_s"], abs=1e-6)
        assert got["end_s"] == pytest.approx(want["end_s"], abs=1e-6)
        if "confidence" in got:
            assert got["confidence"] == pytest.approx(want["confidence"], rel=1e-5)


def test_rttm_round_trips(dataset: Path, tmp_path: Path):
    table = all_segments(dataset)
    assert {s["channel"] for s in table} == {0, 1} and len({s["label"] for s in table}) >= 3
    proc = run_cli("export", str(dataset), "--table", "segments", "--format", "rttm")
    assert proc.returncode == 0, proc.stderr
    assert "in%20dir/mix%20one.wav" in proc.stdout  # RTTM fields split on spaces
    assert all(len(line.split()) == 10 for line in proc.stdout.splitlines())
    assert_same_segments(list(read_rttm(io.StringIO(proc.stdout))), table)
    # To a file, with a summary.
    target = tmp_path / "sub" / "all.rttm"
    code, summary, err = run_json("export", str(dataset), "-t", "segments", "-f", "rttm", "-o", str(target))
    assert code == 0, err
    assert summary["rows"] == len(table) and summary["files"] == 3 and summary["written"] == 1
    assert target.read_text() == proc.stdout


def test_segments_csv_audacity_and_textgrid(dataset: Path, tmp_path: Path):
    table = all_segments(dataset)
    proc = run_cli("export", str(dataset), "-t", "segments", "-f", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["relpath", "file_id", "channel", "start_s", "end_s", "label", "confidence"]
    for r in rows:
        r["channel"], r["start_s"], r["end_s"] = int(r["channel"]), float(r["start_s"]), float(r["end_s"])
        r["confidence"] = float(r["confidence"])
    assert_same_segments(rows, table)
    assert all(float(r["start_s"]) == t["start_s"] for r, t in zip(rows, table))  # repr: exact

    code, summary, err = run_json(
        "export", str(dataset), "-t", "segments", "-f", "audacity", "-o", str(tmp_path / "aud")
    )
    assert code == 0, err
    assert summary["files"] == 3
    read = []
    for relpath in ("in dir/mix one.wav", "music/short.wav", "music/st.flac"):
        for line in (tmp_path / "aud" / f"{relpath}.txt").read_text().splitlines():
            start, end, label = line.split("\t")
            channel = 0
            if m := re.fullmatch(r"(\w+) \(channel (\d)\)", label):
                label, channel = m[1], int(m[2])
            read.append(
                {"relpath": relpath, "channel": channel, "start_s": float(start), "end_s": float(end), "label": label}
            )
    read.sort(key=lambda s: (s["relpath"], s["channel"], s["start_s"]))
    assert_same_segments(read, table)

    code, _, err = run_json("export", str(dataset), "-t", "segments", "-f", "textgrid", "-o", str(tmp_path / "tg"))
    assert code == 0, err
    ds = audiokit.open(str(dataset))
    read = []
    for relpath in ("in dir/mix one.wav", "music/short.wav", "music/st.flac"):
        text = (tmp_path / "tg" / f"{relpath}.TextGrid").read_text()
        assert text.startswith('File type = "ooTextFile"\nObject class = "TextGrid"')
        tiers = text.split('class = "IntervalTier"')[1:]
        assert len(tiers) == (2 if relpath.endswith("st.flac") else 1)
        for channel, tier in enumerate(tiers):
            intervals = re.findall(r"xmin = ([\d.]+)\n\s+xmax = ([\d.]+)\n\s+text = \"(.*)\"", tier)
            # Praat's rule: the intervals of a tier tile [0, xmax] without gaps.
            assert float(intervals[0][0]) == 0.0
            assert all(float(a[1]) == float(b[0]) for a, b in zip(intervals, intervals[1:]))
            assert float(intervals[-1][1]) >= ds.file(relpath)["duration_s"] - 1e-6
            for start, end, label in intervals:
                if label:
                    read.append(
                        {
                            "relpath": relpath,
                            "channel": channel,
                            "start_s": float(start),
                            "end_s": float(end),
                            "label": label,
                        }
                    )
    assert_same_segments(read, table)


def test_npy_per_file_with_an_index(dataset: Path, tmp_path: Path):
    out = tmp_path / "npy"
    code, summary, err = run_json("export", str(dataset), "-t", "mfcc", "-f", "npy", "-o", str(out))
    assert code == 0, err
    assert summary["files"] == 3 and summary["written"] == 4
    ds = audiokit.open(str(dataset))
    index = list(csv.DictReader(open(out / "index.csv")))
    assert [r["relpath"] for r in index] == ["in dir/mix one.wav", "music/short.wav", "music/st.flac"]
    for r in index:
        array = np.load(out / r["npy"])
        assert r["npy"] == r["relpath"] + ".npy" and array.dtype == np.float32
        assert "x".join(map(str, array.shape)) == r["shape"]
        if r["relpath"] == "music/st.flac":
            assert array.shape[0] == 2 and r["channels"] == "2"
            for channel in (0, 1):
                np.testing.assert_array_equal(array[channel], ds.frames("mfcc", r["relpath"], channel=channel))
        else:
            np.testing.assert_array_equal(array, ds.frames("mfcc", r["relpath"]))


def test_frames_csv_and_filters(dataset: Path, tmp_path: Path):
    target = tmp_path / "mfcc.csv"
    code, summary, err = run_json(
        "export",
        str(dataset),
        "-t",
        "mfcc",
        "-f",
        "csv",
        "-o",
        str(target),
        "--where",
        "status = 'ok' and duration_s >= 5",
    )
    assert code == 0, err
    rows = list(csv.reader(open(target)))
    assert rows[0] == ["relpath", "file_id", "channel", "frame", "time_s", *(f"mfcc_{i}" for i in range(20))]
    ds = audiokit.open(str(dataset))
    assert {r[0] for r in rows[1:]} == {"in dir/mix one.wav", "music/st.flac"}  # short.wav is 2 s
    mine = [r for r in rows[1:] if r[0] == "in dir/mix one.wav"]
    np.testing.assert_array_equal(
        np.array([[float(x) for x in r[5:]] for r in mine], dtype=np.float32), ds.frames("mfcc", mine[0][0])
    )
    assert summary["rows"] == len(rows) - 1

    code, summary, err = run_json(
        "export", str(dataset), "-t", "spectral", "-f", "npy", "-o", str(tmp_path / "s"), "--include", "music/*"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "s" / "music").iterdir()) == ["short.wav.npy", "st.flac.npy"]
    assert np.load(tmp_path / "s" / "music" / "short.wav.npy").shape[1] == 6
    proc = run_cli("export", str(dataset), "-t", "segments", "-f", "rttm", "--where", "status = 'error'")
    assert proc.returncode == 0 and proc.stdout == ""
    proc = run_cli(
        "export", str(dataset), "-t", "segments", "-f", "rttm", "--where", "relpath glob 'music/s*' and channels > 1"
    )
    assert {line.split()[1] for line in proc.stdout.splitlines()} == {"music/st.flac"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["-t", "mfcc", "-f", "rttm"], "does not fit table 'mfcc'"),
        (["-t", "segments", "-f", "npy"], "choose from: rttm, csv, audacity, textgrid"),
        (["-t", "segments", "-f", "audacity"], "give a directory with -o"),
        (["-t", "nope", "-f", "csv"], "no table 'nope'"),
        (["-t", "segments", "-f", "csv", "--where", "status = ok"], "not a quoted text"),
        (["-t", "segments", "-f", "csv", "--where", "colour = 'red'"], "no column 'colour'"),
        (["-t", "segments", "-f", "csv", "--where", "status ~ 'ok'"], "cannot read"),
    ],
)
def test_bad_requests_are_one_line_errors(dataset: Path, args: list[str], message: str):
    proc = run_cli("export", str(dataset), *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("audiokit: error: ") and message in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_library_call_matches_the_cli(dataset: Path):
    from audiokit.export import export

    stream = io.StringIO()
    summary = export(str(dataset), table="segments", format="rttm", stdout=stream)
    assert stream.getvalue() == run_cli("export", str(dataset), "-t", "segments", "-f", "rttm").stdout
    assert json.loads(json.dumps(summary.to_dict()))["files"] == 3


@pytest.mark.parametrize("command", ["show", "report", "export"])
def test_the_new_commands_have_help(command: str):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: ") and "OUT" in proc.stdout.splitlines()[0]
    assert "dataset OUT" in " ".join(proc.stdout.split())  # the help text says what OUT is
