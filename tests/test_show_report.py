"""`audiokit show` and `audiokit report`: real figures from real datasets; the page in Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import audiokit
from tests.conftest import NO_CHROMIUM, REPO, run_cli, run_json, write_audio
from tests.headless import chromium, load, not_blank


def tone_silence_noise(sr: int, silence_s: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(3 * sr) / sr
    return np.concatenate([0.4 * np.sin(2 * np.pi * 440 * t), np.zeros(silence_s * sr), 0.3 * rng.standard_normal(3 * sr)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("show")
    audio = root / "audio"
    # 3 s of silence: longer than the segments' default min_segment_s (2 s), so it stays a segment
    write_audio(audio / "talk" / "mix.wav", tone_silence_noise(16000, 3)[:, None].astype(np.float32), 16000)
    write_audio(
        audio / "music" / "stereo.flac", np.stack([tone_silence_noise(22050, 3)] * 2, 1).astype(np.float32) * 0.5, 22050
    )
    (audio / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk that is not audio")
    out = root / "out"
    code, _, err = run_json("extract", str(audio), "-o", str(out), "-x", "logmel,spectral,segments")
    assert code == 1, err
    code, _, err = run_json("extract", str(audio), "-o", str(out), "-x", "logmel,spectral,segments")  # a second run
    assert code == 1, err
    return out


def png_stats(path: Path) -> tuple[tuple[int, int], float, float]:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size, *not_blank(data)


def labels_of(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes]


def test_show_draws_from_the_tables(dataset: Path, tmp_path: Path):
    target = tmp_path / "fig" / "mix.png"
    proc = run_cli("show", str(dataset), "talk/mix.wav", "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(target)
    size, spread, drawn = png_stats(target)
    assert size[0] >= 800 and size[1] >= 500 and spread > 20 and drawn > 0.2
    assert target.stat().st_size < 300_000

    from audiokit.plots import SEGMENT_COLOURS, file_figure

    ds = audiokit.open(str(dataset))
    fig = file_figure(ds, "talk/mix.wav")
    assert labels_of(fig) == ["waveform", "log-mel\n(logmel table)", "segments", "RMS dBFS\n(spectral)"]
    title = fig._suptitle.get_text()
    assert "talk/mix.wav" in title and "9.00 s" in title and "WAV/PCM_16" in title and "status: ok" in title
    # The band: one coloured span per segment, in the label's colour.
    segments = ds.segments("talk/mix.wav").to_pylist()
    spans = [p for p in fig.axes[2].patches]
    assert len(spans) == len(segments) >= 3
    import matplotlib.colors as mcolors

    for patch, segment in zip(spans, segments):
        assert mcolors.to_hex(patch.get_facecolor()) == SEGMENT_COLOURS[segment["label"]]
    assert {t.get_text() for t in fig.axes[2].texts} == {s["label"] for s in segments}


def test_show_computes_what_the_dataset_lacks(tmp_path: Path):
    """No logmel, no spectral: the log-mel and the RMS are computed from the decoded audio."""
    audio = tmp_path / "audio"
    write_audio(audio / "mix.wav", tone_silence_noise(16000)[:, None].astype(np.float32), 16000)
    out = tmp_path / "out"
    code, _, err = run_json("extract", str(audio), "-o", str(out), "-x", "mfcc")
    assert code == 0, err
    from audiokit.dsp import mel_frequencies
    from audiokit.plots import PICTURE_N_MELS, audio_overview, file_figure

    fig = file_figure(audiokit.open(str(out)), "mix.wav")
    assert labels_of(fig) == ["waveform", "log-mel\n(computed)", "segments", "RMS dBFS\n(computed)"]
    assert [t.get_text() for t in fig.axes[2].texts] == ["no segments table"]
    view = audio_overview(str(audio / "mix.wav"))
    tone, silence, noise = view.times < 2.9, (view.times > 3.1) & (view.times < 4.9), view.times > 5.1
    assert view.high[tone].max() == pytest.approx(0.4, abs=0.01) and np.abs(view.high[silence]).max() == 0
    assert view.rms_db[tone].mean() == pytest.approx(20 * np.log10(0.4 / np.sqrt(2)), abs=0.1)
    assert view.rms_db[noise].mean() == pytest.approx(20 * np.log10(0.3), abs=0.3)
    # The tone's band is the loudest one where the tone plays (mel band centres, Slaney scale).
    centres = mel_frequencies(PICTURE_N_MELS + 2, fmin=0.0, fmax=8000.0)[1:-1]
    assert abs(centres[view.mel_db[:, tone].mean(axis=1).argmax()] - 440) < 60
    assert view.mel_db[:, silence].max() == view.mel_db.max() - 80  # the top_db floor


def test_show_uses_a_loudness_table_when_there_is_one(tmp_path: Path):
    import pyarrow as pa

    from audiokit.plots import file_figure
    from audiokit.store.arrays import numeric, repeated
    from tests.synthetic_store import commit_files, files_row

    audio = tmp_path / "audio"
    write_audio(audio / "a.wav", tone_silence_noise(16000)[:, None].astype(np.float32), 16000)
    row = files_row("a.wav", root=str(audio), duration_s=8.0)
    n = 80
    schema = pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("channel", pa.int32(), nullable=False),
            pa.field("frame", pa.int64(), nullable=False),
            pa.field("time_s", pa.float64(), nullable=False),
            pa.field("momentary_lufs", pa.float32()),
        ]
    )
    curve = np.linspace(-30, -10, n).astype(np.float32)
    batch = pa.RecordBatch.from_arrays(
        [
            repeated(row["file_id"], n),
            numeric(np.zeros(n, np.int32)),
            numeric(np.arange(n)),
            numeric(np.arange(n) * 0.1),
            numeric(curve),
        ],
        schema=schema,
    )
    commit_files(str(tmp_path / "out"), [(row, {"loudness": batch})], schemas={"loudness": schema})
    fig = file_figure(audiokit.open(str(tmp_path / "out")), "a.wav")
    assert labels_of(fig)[3] == "momentary_lufs\n(loudness)"
    (line,) = fig.axes[3].lines
    np.testing.assert_allclose(line.get_ydata(), curve, atol=1e-4)


def test_show_a_failed_file_a_missing_recording_and_bad_requests(dataset: Path, tmp_path: Path):
    from audiokit.plots import file_figure

    proc = run_cli("show", str(dataset), "bad.wav", "-o", str(tmp_path / "bad.png"))
    assert proc.returncode == 0, proc.stderr
    ds = audiokit.open(str(dataset))
    fig = file_figure(ds, "bad.wav")
    title = fig._suptitle.get_text()
    bad = ds.file("bad.wav")
    assert "status: error" in title and f"{bad['error_kind']}: {bad['error'][:60]}" in title
    # The recording moved away: the tables still give the picture.
    moved = tmp_path / "copy"
    shutil.copytree(dataset, moved)
    ds = audiokit.open(str(moved))
    original = ds.file("talk/mix.wav")["path"]
    backup = tmp_path / "mix.wav"
    shutil.move(original, backup)
    try:
        fig = file_figure(ds, "talk/mix.wav")
        assert "audio not found" in fig.axes[0].texts[0].get_text()
        assert labels_of(fig)[1:] == ["log-mel\n(logmel table)", "segments", "RMS dBFS\n(spectral)"]
    finally:
        shutil.move(backup, original)
    for args, message in [
        (["show", str(dataset), "nope.wav"], "is not in"),
        (["show", str(tmp_path), "x.wav"], "not an audiokit dataset"),
        (["show", str(dataset), "music/stereo.flac", "--channel", "3"], "has channels"),
        (["report", str(dataset), "--figures", "-1"], "--figures"),
    ]:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_without_matplotlib_show_says_what_to_install(dataset: Path, tmp_path: Path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "sys.argv = ['audiokit', 'show', sys.argv[1], 'talk/mix.wav']\n"
        "from audiokit.cli import main; main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(dataset)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2 and "audiokit[plot]" in proc.stderr


def make_report(dataset: Path, tmp_path: Path) -> tuple[Path, str]:
    target = tmp_path / "report.html"
    proc = run_cli("report", str(dataset), "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    return target, target.read_text()


def test_report_is_one_self_contained_page(dataset: Path, tmp_path: Path):
    target, page = make_report(dataset, tmp_path)
    assert "<script" not in page.lower()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page, flags=re.IGNORECASE)
    assert references and all(r.startswith("data:image/png;base64,") for r in references)
    assert "url(" not in page and "@import" not in page
    for reference in references:
        assert base64.b64decode(reference.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    ds = audiokit.open(str(dataset))
    bad = ds.file("bad.wav")
    assert "bad.wav" in page and bad["error_kind"] in page
    assert (bad["error"][:40].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")) in page
    # Counts by status and error kind, the runs, the per-file figures.
    assert re.search(r"<td>ok</td><td>2</td>", page) and re.search(rf"<td>{bad['error_kind']}</td><td>1</td>", page)
    for alt in ("durations", "sample rates", "formats", "channels", "speech share"):
        assert page.count(f'alt="{alt}"') == 1
    runs_section = page.split("<h2>Last runs</h2>")[1].split("<h2>")[0]
    assert runs_section.count("<tr>") == 1 + 2  # header + two runs, newest first
    assert page.count("<h3>") == 2  # both ok files drawn
    assert target.stat().st_size < 2_000_000


@pytest.mark.skipif(chromium() is None, reason=f"{NO_CHROMIUM}: install Debian's chromium")
def test_report_loads_in_a_headless_browser_without_errors(dataset: Path, tmp_path: Path):
    target, _ = make_report(dataset, tmp_path)
    page = load(target.as_uri())
    assert page.loaded
    assert page.errors == [] and page.requests == []
    spread, drawn = not_blank(page.screenshot)
    assert spread > 20 and drawn > 0.05
    # The check itself can fail: a page with a script error, a console error, a missing image and
    # a request off the machine.
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<html><body><p>x</p><img src='missing.png'><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); notAFunction();</script></body></html>"
    )
    bad = load(broken.as_uri())
    assert any("boom" in e for e in bad.errors) and any("notAFunction" in e for e in bad.errors)
    assert any("missing.png" in e for e in bad.errors) and bad.requests == ["http://127.0.0.1:9/x.png"]
    assert not_blank(bad.screenshot)[1] < 0.01  # nearly empty: what "blank" looks like
