"""The traps a new user fell into in their first hour (issue #13), each through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import REPO, run_cli, run_json, tone, write_audio


def rows(out: Path, table: str) -> list[dict]:
    if not (out / table).is_dir():
        return []
    return ds.dataset(str(out / table), format="parquet").to_table().to_pylist()


def ids_in(out: Path, table: str) -> set[str]:
    return {r["file_id"] for r in rows(out, table)}


def files_by_relpath(out: Path) -> dict[str, dict]:
    return {r["relpath"]: r for r in rows(out, "files")}


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# ------------------------------------------------------------------ 1. changing the chain


@pytest.mark.parametrize(
    "first, later, later_tables",
    [
        (["-x", "segments"], [], {"mfcc", "spectral"}),
        (["-x", "logmel"], ["--force"], {"mfcc", "spectral"}),
        ([], ["-x", "logmel"], {"logmel"}),
        (["-x", "mfcc,segments"], ["-x", "logmel"], {"logmel"}),
    ],
)
def test_changing_the_chain_in_any_order_never_breaks_the_dataset(corpus, tmp_path, first, later, later_tables):
    out = tmp_path / "out"
    code, _, stderr = run_json("extract", str(corpus), "-o", str(out), *first)
    assert code == 0, stderr
    before = {t: ids_in(out, t) for t in ("mfcc", "spectral", "logmel", "segments")}
    bump_mtime(corpus / "a" / "tone.wav")
    for _ in range(2):  # the run after the change works too (a cron job runs every night)
        code, summary, stderr = run_json("extract", str(corpus), "-o", str(out), *later)
        assert code == 0 and "Traceback" not in stderr, stderr
    files = files_by_relpath(out)
    changed = files["a/tone.wav"]["file_id"]
    for table, held in before.items():
        if table in later_tables:
            assert ids_in(out, table) == {r["file_id"] for r in files.values()}, table
        else:
            # Rows of tables outside the run's chain stay for unchanged files; a changed file's
            # stale rows go (they described its old version).
            assert ids_in(out, table) == held - {changed}, table


# ------------------------------------------------------------------ 2. configs without [input]


def test_configs_without_an_input_section_take_the_default_extensions(corpus, tmp_path):
    only_chain = tmp_path / "mine.toml"
    only_chain.write_text('chain = ["mfcc"]\n[mfcc]\nn_mfcc = 13\n')
    for n, config in enumerate([str(REPO / "configs" / "speech.toml"), "music", str(only_chain)]):
        code, summary, stderr = run_json("extract", str(corpus), "-o", str(tmp_path / f"out{n}"), "-c", config)
        assert code == 0 and summary["processed"] == 4, (config, stderr)


def test_the_shipped_default_config_lists_the_built_in_extensions():
    import tomllib

    from audiokit.config import DEFAULT_EXTENSIONS

    shipped = tomllib.loads((REPO / "configs" / "default.toml").read_text())["input"]["extensions"]
    assert tuple(shipped) == DEFAULT_EXTENSIONS


# ------------------------------------------------------------------ 3. parameter ranges


def invalid_values(param: dict) -> list:
    """Values a parameter must refuse, from what `audiokit extractors --json` says it allows."""
    values = []
    if param["type"].startswith("bool"):
        values.append('"maybe"')
    if param["choices"] is not None:
        values.append('"no-such-choice"')
    bounds = param["bounds"]
    integer = param["type"].startswith("int")
    step = 1 if integer else 0.5
    if "min" in bounds:
        values.append(bounds["min"] - step)
    if "above" in bounds:
        values.append(bounds["above"])
    if "max" in bounds:
        values.append(bounds["max"] + step if integer else bounds["max"] * 2 + 1)
    if "below" in bounds:
        values.append(bounds["below"])
    if "(" in param["allowed"]:  # a check: a name or path that is not there
        values.append('"/no/such/thing.npz"')
    if param["type"].startswith(("int", "float")) and param["choices"] is None:
        values.append('"lots"')
    return values


def test_every_parameter_refuses_values_out_of_its_range(tmp_path):
    proc = run_cli("extractors", "--json")
    assert proc.returncode == 0
    extractors = json.loads(proc.stdout)
    src = tmp_path / "in"
    write_audio(src / "x.wav", tone(16000, 0.5), 16000)
    checked = 0
    for name, spec in extractors.items():
        for param in spec["params"]:
            values = invalid_values(param)
            assert values, f"{name}.{param['name']} declares nothing it refuses ({param['allowed']})"
            for value in values:
                out = tmp_path / "out"
                setting = f"{name}.{param['name']}={value}"
                proc = run_cli("extract", str(src), "-o", str(out), "-x", name, "--set", setting)
                assert proc.returncode == 2, (setting, proc.stderr)
                assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("audiokit: error: "), proc.stderr
                assert f"{name}.{param['name']}" in proc.stderr, proc.stderr
                assert "allowed: " in proc.stderr or " must be " in proc.stderr, proc.stderr
                assert not out.exists(), setting
                checked += 1
    assert checked > 60


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("mfcc.hop_length=-1", "mfcc.hop_length=-1 is out of range; allowed: an integer >= 1"),
        ("mfcc.sr=1", "mfcc.sr=1 is out of range; allowed: an integer >= 1000 and <= 384000"),
        ("mfcc.n_mels=0", "mfcc.n_mels=0 is out of range"),
        ("mfcc.n_mfcc=0", "mfcc.n_mfcc=0 is out of range"),
        ("mfcc.sr=-16000", "mfcc.sr=-16000 is out of range"),
        ("mfcc.n_fft=0", "mfcc.n_fft=0 is out of range; allowed: an integer >= 16"),
        ("audio.block_seconds=0", "audio.block_seconds=0.0 is out of range"),
        ("audio.channels=left", "audio.channels='left' is not allowed; allowed: one of: mix, first, each"),
    ],
)
def test_the_reported_nonsense_values_name_parameter_value_and_range(corpus, tmp_path, setting, needle):
    proc = run_cli("extract", str(corpus), "-o", str(tmp_path / "out"), "--set", setting)
    assert proc.returncode == 2 and proc.stderr.startswith(f"audiokit: error: {needle}"), proc.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 4. the Python API


def test_extract_from_python_takes_one_path_and_shows_its_signature(corpus, tmp_path):
    code = (
        "import audiokit, inspect, pydoc\n"
        f"s = audiokit.extract({str(corpus)!r}, {str(tmp_path / 'out')!r}, extractors='mfcc', workers=1)\n"
        "print(s.files_seen, s.processed)\n"
        "print(inspect.signature(audiokit.extract))\n"
        "print(pydoc.render_doc(audiokit.extract))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, signature, *doc = proc.stdout.splitlines()
    assert first == "4 4"
    assert signature.startswith("(inputs: 'str | os.PathLike | Iterable[str | os.PathLike]', out:")
    assert "Extract the configured features" in "\n".join(doc)


# ------------------------------------------------------------------ 5. damaged MP3, any block size


def damaged_mp3(path: Path, offsets: tuple[int, ...]) -> Path:
    """A real MP3 (libsndfile's LAME encoder) with every 7th frame's side information
    overwritten, so that libmpg123 reports bad granules ("big_values too large",
    "dequantization failed") while decoding it."""
    sr = 44100
    t = np.arange(sr * 12) / sr
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
    clean = path.with_suffix(".clean.mp3")
    sf.write(str(clean), y, sr, format="MP3", subtype="MPEG_LAYER_III")
    data = bytearray(clean.read_bytes())
    clean.unlink()
    headers = [i for i in range(len(data) - 1) if data[i] == 0xFF and (data[i + 1] & 0xE0) == 0xE0]
    for start in headers[50::7][:40]:
        for offset in offsets:
            data[start + offset] = 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("offsets", [(7, 8), (8, 9)])
def test_a_damaged_mp3_decodes_the_same_in_blocks_of_any_size(tmp_path, offsets):
    from audiokit.audio.decode import open_audio

    path = damaged_mp3(tmp_path / "damaged.mp3", offsets)
    # The damage is real: plain reads of different sizes disagree on it.
    with sf.SoundFile(str(path)) as f:
        odd = np.concatenate([f.read(1000, dtype="float32", always_2d=True) for _ in range(600)])
    whole = sf.read(str(path), dtype="float32", always_2d=True)[0]
    assert np.abs(odd - whole[: len(odd)]).max() > 1e-3
    decoded = []
    for block_frames in (1000, 4096, 22050, 441000, 10**7):
        with open_audio(str(path)) as reader:
            decoded.append(np.concatenate(list(reader.blocks(block_frames))))
    for samples in decoded[:-1]:
        np.testing.assert_array_equal(samples, decoded[-1])


def test_a_damaged_mp3_gives_the_same_rows_whatever_the_block_size(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    damaged_mp3(src / "damaged.mp3", (7, 8))
    tables = []
    for n, seconds in enumerate(("0.37", "10.0", "60.0")):
        out = tmp_path / f"out{n}"
        code, _, stderr = run_json("extract", str(src), "-o", str(out), "-x", "mfcc", "--set", f"audio.block_seconds={seconds}")
        assert code == 0, stderr
        tables.append(ds.dataset(str(out / "mfcc")).to_table().sort_by("frame"))
    for table in tables[1:]:
        assert table.column("frame").equals(tables[0].column("frame"))
        np.testing.assert_allclose(
            np.stack(table.column("mfcc").to_pylist()), np.stack(tables[0].column("mfcc").to_pylist()), rtol=0, atol=1e-4
        )


# ------------------------------------------------------------------ 7. empty -x, --set outside the chain


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-x", ""], "no extractor chosen; choose from: "),
        (["-x", " , "], "no extractor chosen; choose from: "),
        (["--set", "logmel.n_mels=40"], "--set logmel.n_mels=40: logmel is not in this run's chain (mfcc, spectral); add it with -x"),
        (["-x", "mfcc", "--set", "spectral.n_fft=512"], "spectral is not in this run's chain (mfcc)"),
    ],
)
def test_an_empty_chain_or_a_setting_outside_it_is_a_usage_error(corpus, tmp_path, args, needle):
    proc = run_cli("extract", str(corpus), "-o", str(tmp_path / "out"), *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 8. a foreign output directory


def test_an_output_directory_that_is_not_a_dataset_is_refused(corpus, tmp_path):
    foreign = tmp_path / "mine"
    (foreign / "files").mkdir(parents=True)
    (foreign / "files" / "keep.csv").write_text("a,b\n1,2\n")
    proc = run_cli("extract", str(corpus), "-o", str(foreign))
    assert proc.returncode == 2 and "is neither empty nor an audiokit dataset" in proc.stderr
    assert sorted(p.relative_to(foreign).as_posix() for p in foreign.rglob("*")) == ["files", "files/keep.csv"]
    # An empty directory and an existing dataset are fine.
    (tmp_path / "empty").mkdir()
    assert run_cli("extract", str(corpus), "-o", str(tmp_path / "empty")).returncode == 0
    assert run_cli("extract", str(corpus), "-o", str(tmp_path / "empty")).returncode == 0


# ------------------------------------------------------------------ 9. exit status on record


def test_the_run_log_records_the_exit_status_of_an_interrupted_run(corpus, tmp_path):
    from plugins.faulty import MARK

    write_audio(corpus / "stuck.wav", np.full((16000, 1), MARK, dtype=np.float32), 16000)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "AUDIOKIT_PLUGINS": "plugins.faulty"}
    args = ["extract", str(corpus), "-o", str(out), "-x", "faulty", "--set", "faulty.mode=hang", "--workers", "1", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "audiokit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "files").exists():
        time.sleep(0.2)
    assert (out / "files").exists(), "no commit while the stuck file held the worker"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["exit_status"] == 130 and summary["stopped"] == "SIGINT"
    runs = [json.loads(line) for line in (out / "_audiokit" / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["exit_status"] == 130


def test_an_unwritable_or_locked_output_still_prints_the_json_summary(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output's parent should be")
    proc = run_cli("extract", str(corpus), "-o", str(blocker / "out"), "--json")
    assert proc.returncode == 3 and "not writable" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["exit_status"] == 3 and "not writable" in summary["error"] and summary["processed"] == 0

    import fcntl

    out = tmp_path / "out"
    assert run_cli("extract", str(corpus), "-o", str(out)).returncode == 0
    with open(out / "_audiokit" / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run_cli("extract", str(corpus), "-o", str(out), "--json")
    assert proc.returncode == 3 and "in use by another audiokit run" in proc.stderr
    assert json.loads(proc.stdout)["exit_status"] == 3


# ------------------------------------------------------------------ 10. what a CLI of this kind offers


def test_version_help_metavars_and_examples():
    from audiokit import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"audiokit {__version__}\n"
    help_text = " ".join(run_cli("extract", "--help").stdout.split())  # whatever the wrapping
    for needle in ("Exit status: 0 every file ok", "2 usage or config error", "Examples:", "audiokit extract recordings/ -o features/",
                   "-o, --out OUT", "--set SECTION.PARAM=VALUE", "-c, --config CONFIG", "shipped one: default, speech, music"):
        assert needle in help_text, needle
    for command in ([], ["extract"], ["info"], ["extractors"], ["models", "pull"]):
        text = run_cli(*command, "--help").stdout
        for wrong in ("<bool>", "<list[str]>", "<str>", "<path>", "{out}", "<int>"):
            assert wrong not in text, (command, wrong)
    assert "--show-completion" in run_cli("--help").stdout


# ------------------------------------------------------------------ 11. finding failures


def test_info_lists_failures_and_shows_one_file(corpus, tmp_path):
    (corpus / "b" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out"
    assert run_cli("extract", str(corpus), "-o", str(out)).returncode == 1
    proc = run_cli("info", str(out), "--failed")
    assert proc.returncode == 0
    path, kind, error = proc.stdout.rstrip("\n").split("\t")
    assert path == str(corpus / "b" / "broken.wav") and kind == "unsupported" and error.startswith("not a readable audio file")
    [failure] = json.loads(run_cli("info", str(out), "--failed", "--json").stdout)
    assert failure == {"path": path, "relpath": "b/broken.wav", "error_kind": kind, "error": error}

    one = json.loads(run_cli("info", str(out), "a/tone.wav", "--json").stdout)
    mfcc = ds.dataset(str(out / "mfcc")).to_table().to_pylist()
    assert one["file"]["relpath"] == "a/tone.wav" and one["file"]["status"] == "ok"
    assert one["tables"]["mfcc"] == sum(r["file_id"] == one["file"]["file_id"] for r in mfcc) > 0
    for key in (str(corpus / "a" / "tone.wav"), one["file"]["file_id"]):
        assert json.loads(run_cli("info", str(out), key, "--json").stdout)["file"] == one["file"]
    proc = run_cli("info", str(out), "nope.wav")
    assert proc.returncode == 2 and "nope.wav is not in the dataset" in proc.stderr
    assert "audiokit info" in run_cli("info", str(out)).stdout  # the summary points to --failed


def test_info_counts_rows_from_the_parquet_footers_only(corpus, tmp_path):
    out = tmp_path / "out"
    assert run_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc").returncode == 0
    [part] = (out / "mfcc").glob("part-*.parquet")
    rows_before = pq.ParquetFile(part).metadata.num_rows
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4 : len(data) - footer] = bytes(len(data) - footer - 4)  # every data page zeroed
    part.write_bytes(bytes(data))
    with pytest.raises(OSError):
        pq.read_table(part)  # reading the table would fail now
    proc = run_cli("info", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tables"]["mfcc"]["rows"] == rows_before


# ------------------------------------------------------------------ 12. progress


def test_the_eta_follows_seconds_of_audio_not_file_counts():
    from audiokit.discover import AudioFile
    from audiokit.progress import AudioEta

    # One 10-minute WAV first (as the engine orders them), then 50 one-second WAVs.
    files = [AudioFile("/l.wav", "l.wav", 600 * 32000, 0, "long")]
    files += [AudioFile(f"/s{i}.wav", f"s{i}.wav", 32000, 0, f"s{i}") for i in range(50)]
    eta = AudioEta(files)
    assert eta.seconds_left(1.0) is None
    eta.advance("long", 600.0)  # took 6 s: 100× real time
    # 50 s of audio left at 100×: 0.5 s (a count-based estimate would say 50 files × 6 s = 300 s).
    assert eta.seconds_left(6.0) == pytest.approx(0.5)
    for i in range(50):
        eta.advance(f"s{i}", 1.0)
    assert eta.seconds_left(6.5) == 0.0


def test_error_lines_are_the_same_with_and_without_the_progress_bar(corpus, tmp_path):
    (corpus / "b" / "broken.wav").write_bytes(b"not audio at all" * 10)
    lines = []
    for n, extra in enumerate(([], ["--progress"])):
        proc = run_cli("extract", str(corpus), "-o", str(tmp_path / f"out{n}"), "-x", "mfcc", *extra)
        assert proc.returncode == 1
        lines.append([line for line in proc.stderr.splitlines() if line.startswith("audiokit: error:")])
    assert len(lines[0]) == 1 and lines[0] == lines[1]
    assert lines[0][0].startswith("audiokit: error: b/broken.wav: unsupported: not a readable audio file")


# ------------------------------------------------------------------ 13. one file under two roots


def test_a_file_found_under_another_input_root_is_warned_about(corpus, tmp_path):
    out = tmp_path / "out"
    assert run_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc").returncode == 0
    code, summary, stderr = run_json("extract", str(corpus / "a"), "-o", str(out), "-x", "mfcc")
    assert code == 0 and summary["processed"] == 2
    [warning] = summary["warnings"]
    assert warning.startswith(f"{corpus / 'a' / 'tone.flac'} is already in the dataset as 'a/tone.flac' and is now found as 'tone.flac' (and 1 more)")
    assert "audiokit: warning: " + warning in stderr
