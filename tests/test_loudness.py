"""`loudness`: EBU Tech 3341/3342 test signals generated in code, native channels, blocks = whole,
and parity with pyloudnorm and FFmpeg's ebur128 on real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf

import audiokit
from tests.conftest import NO_SHARED_DATA, SHARED_DATA, run_json, write_audio

SR = 48000


def sine(dbfs: float, seconds: float, *, freq: float = 1000.0, channels: int = 2, sr: int = SR, phase: float = 0.0):
    """A sine of peak `dbfs` on every channel, `(n, channels)` float32."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t + phase)
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32)


def sequence(*parts: tuple[float, float]) -> np.ndarray:
    return np.concatenate([sine(db, seconds) for db, seconds in parts])


def write_float(path: Path, data: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype="FLOAT")
    return path


def loudness_rows(out: Path) -> dict[str, dict]:
    files = {r["file_id"]: r for r in ds.dataset(out / "files").to_table().to_pylist()}
    return {Path(files[r["file_id"]]["path"]).stem: r for r in ds.dataset(out / "loudness").to_table().to_pylist()}


def extract_loudness(tmp_path: Path, signals: dict[str, np.ndarray], **kwargs) -> dict[str, dict]:
    root = tmp_path / "signals"
    for name, data in signals.items():
        write_float(root / f"{name}.wav", data)
    out = tmp_path / "out"
    result = audiokit.extract([str(root)], str(out), extractors=["loudness"], workers=1, **kwargs)
    assert result.failed == 0
    return loudness_rows(out)


# EBU Tech 3341 (minimum requirements) cases 1-6: 1 kHz sines, expected I = -23 (case 2: -33)
# LUFS within ±0.1 LU. Case 6 is five channels: L, R at -28, C at -24, Ls, Rs at -30 dBFS.
TECH_3341 = {
    "case1": (sine(-23, 20), -23.0),
    "case2": (sine(-33, 20), -33.0),
    "case3": (sequence((-36, 10), (-23, 60), (-36, 10)), -23.0),
    "case4": (sequence((-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)), -23.0),
    "case5": (sequence((-26, 20), (-20, 20.1), (-26, 20)), -23.0),
    "case6": (
        np.concatenate([sine(-28, 20, channels=2), sine(-24, 20, channels=1), sine(-30, 20, channels=2)], axis=1),
        -23.0,
    ),
}

# EBU Tech 3342 cases 1-4: stereo 1 kHz tone sequences, expected LRA within ±1 LU.
TECH_3342 = {
    "lra1": (sequence((-20, 20), (-30, 20)), 10.0),
    "lra2": (sequence((-20, 20), (-15, 20)), 5.0),
    "lra3": (sequence((-40, 20), (-20, 20)), 20.0),
    "lra4": (sequence((-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)), 15.0),
}


def test_tech3341_integrated_loudness_and_tech3342_loudness_range(tmp_path):
    signals = {name: data for name, (data, _) in {**TECH_3341, **TECH_3342}.items()}
    rows = extract_loudness(tmp_path, signals)
    for name, (data, expected) in TECH_3341.items():
        assert rows[name]["channels"] == data.shape[1]
        assert abs(rows[name]["integrated_lufs"] - expected) <= 0.1, (name, rows[name])
    for name, (_, expected) in TECH_3342.items():
        assert abs(rows[name]["lra_lu"] - expected) <= 1.0, (name, rows[name])
    # A steady tone has no loudness range; its sample peak is the sine's amplitude.
    assert rows["case1"]["lra_lu"] == pytest.approx(0.0, abs=0.05)
    assert rows["case1"]["sample_peak_dbfs"] == pytest.approx(-23.0, abs=0.01)


# True peak (Tech 3341 cases 15-23): sines at fs/4, fs/6 and fs/8 whose samples straddle the crest,
# so the sample peak reads low; the true peak must read the sine's amplitude within +0.2/-0.4 dB.
TRUE_PEAK = {
    "tp_quarter_mid": (SR / 4, 0.5, -6.0),  # crest half-way between samples (sample peak 3 dB low)
    "tp_quarter_eighth": (SR / 4, 0.125, -6.0),  # crest 1/8 sample from a sample: off the 4x grid
    "tp_sixth_mid": (SR / 6, 0.5, -6.0),
    "tp_eighth_mid": (SR / 8, 0.5, -6.0),
    "tp_quarter_over": (SR / 4, 0.5, 3.0),  # +3 dBTP from samples at 0 dBFS: an inter-sample over
    "tp_sixth_over": (SR / 6, 0.5, 3.0),
    "tp_eighth_over": (SR / 8, 0.5, 3.0),
    "tp_on_samples": (SR / 4, 0.0, -6.0),  # crest on a sample: true peak = sample peak
    "tp_low_tone": (997.0, 0.37, 0.0),
}


def test_true_peak_of_tech3341_style_sines(tmp_path):
    signals = {}
    for name, (freq, offset, dbtp) in TRUE_PEAK.items():
        # The crest sits `offset` samples after sample 0: phase = pi/2 - 2 pi f offset / sr.
        phase = np.pi / 2 - 2 * np.pi * freq * offset / SR
        tone = sine(dbtp, 2.0, freq=freq, phase=phase)
        # 10 ms raised-cosine fades: a tone switched on at full level is a step, whose band-limited
        # reconstruction genuinely overshoots (any true-peak meter reads it above the sine).
        fade = np.sin(np.linspace(0, np.pi / 2, SR // 100)) ** 2
        tone[: fade.size] *= fade[:, None]
        tone[-fade.size :] *= fade[::-1, None]
        signals[name] = tone
    rows = extract_loudness(tmp_path, signals)
    for name, (_, _, dbtp) in TRUE_PEAK.items():
        row = rows[name]
        assert dbtp - 0.4 <= row["true_peak_dbtp"] <= dbtp + 0.2, (name, row)
        assert row["sample_peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(signals[name]).max()), abs=1e-4)
        assert row["true_peak_dbtp"] >= row["sample_peak_dbfs"] - 1e-6
    # The straddling sines read 3 dB (fs/4) low on samples: true peak is what catches it.
    assert rows["tp_quarter_over"]["sample_peak_dbfs"] == pytest.approx(3.0 - 3.0103, abs=0.005)


def test_loudness_sees_native_channels_whatever_the_channel_policy(tmp_path):
    # Left and right in antiphase: the mono mix is silence, BS.1770 sums the channels' energy.
    tone = sine(-23, 10, channels=1)
    antiphase = np.concatenate([tone, -tone], axis=1)
    for policy in ("mix", "first", "each"):
        rows = extract_loudness(tmp_path / policy, {"antiphase": antiphase}, overrides=[f"audio.channels={policy}"])
        row = rows["antiphase"]
        assert row["channel"] == 0 and row["channels"] == 2
        assert row["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)


def test_blocks_give_the_same_figures_as_the_whole_file(tmp_path):
    rng = np.random.default_rng(3)
    # Programme-like: noise bursts of changing level, 44.1 kHz stereo, 47.3 s (not whole quarters).
    sr = 44100
    n = int(47.3 * sr)
    envelope = np.repeat(10 ** (rng.uniform(-40, -3, n // sr + 1) / 20), sr)[:n]
    data = (rng.standard_normal((n, 2)) * envelope[:, None] * 0.3).astype(np.float32)
    path = write_float(tmp_path / "in" / "programme.wav", data, sr)
    figures = []
    for block_seconds in (3600, 1.37, 0.05):
        out = tmp_path / f"out{block_seconds}"
        result = audiokit.extract(
            [str(path)], str(out), extractors=["loudness"], workers=1, overrides=[f"audio.block_seconds={block_seconds}"]
        )
        assert result.failed == 0
        figures.append(loudness_rows(out)["programme"])
    whole = figures[0]
    assert -40 < whole["integrated_lufs"] < -5 and whole["lra_lu"] > 3
    for other in figures[1:]:
        for column in ("integrated_lufs", "lra_lu", "sample_peak_dbfs"):
            assert other[column] == whole[column]
        assert other["true_peak_dbtp"] == pytest.approx(whole["true_peak_dbtp"], abs=1e-5)


def test_edge_cases_through_the_cli(tmp_path):
    root = tmp_path / "in"
    write_audio(root / "silence.wav", np.zeros((SR * 2, 1), dtype=np.float32), SR)
    write_audio(root / "short.flac", sine(-20, 0.3, channels=1), SR)
    write_audio(root / "mp3.mp3", sine(-20, 5.0, channels=2, freq=440.0), SR)
    out = tmp_path / "out"
    code, summary, err = run_json("extract", str(root), "-o", str(out), "-x", "loudness,mfcc")
    assert code == 0, err
    assert summary["tables"]["loudness"] == 3
    rows = loudness_rows(out)
    assert rows["silence"]["integrated_lufs"] == -np.inf and rows["silence"]["sample_peak_dbfs"] == -np.inf
    assert rows["short"]["integrated_lufs"] is None and rows["short"]["lra_lu"] is None  # under one 400 ms block
    assert rows["short"]["sample_peak_dbfs"] == pytest.approx(-20.0, abs=0.05)
    assert rows["mp3"]["integrated_lufs"] == pytest.approx(-20.0, abs=1.0)  # a stereo sine: I ≈ its peak dBFS
    # mfcc of the same run still mixes to one channel; loudness read both.
    assert rows["mp3"]["channels"] == 2
    assert set(ds.dataset(out / "mfcc").to_table()["channel"].to_pylist()) == {0}


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)
def test_real_recordings_match_pyloudnorm_and_ffmpeg(tmp_path):
    from scripts.check_loudness import ebur128, pick_files, pyloudnorm_lufs

    # 3 s and longer: below that pyloudnorm counts a last, partial gating block (FFmpeg and
    # audiokit do not), which moves short clips by up to 0.2 LU.
    files = pick_files(str(SHARED_DATA), 32, min_seconds=3.0)
    assert len(files) >= 30
    rates = {sf.info(p).samplerate for p in files}
    assert {sf.info(p).channels for p in files} == {1, 2} and min(rates) <= 16000 and max(rates) >= 44100
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(files) + "\n")
    out = tmp_path / "out"
    code, summary, err = run_json("extract", "--files-from", str(listing), "-o", str(out), "-x", "loudness")
    assert code == 0, err
    files_rows = {r["file_id"]: r["path"] for r in ds.dataset(out / "files").to_table().to_pylist()}
    ours = {files_rows[r["file_id"]]: r for r in ds.dataset(out / "loudness").to_table().to_pylist()}
    for path in files:
        row = ours[path]
        assert abs(row["integrated_lufs"] - pyloudnorm_lufs(path)) <= 0.1, path
    for path in files[:8]:  # FFmpeg's meter decodes with its own decoders: a few files suffice
        ff = ebur128(path)
        assert abs(ours[path]["integrated_lufs"] - ff["I"]) <= 0.1, path
        assert abs(ours[path]["true_peak_dbtp"] - ff["TP"]) <= 0.2, path


def test_momentary_and_short_term_loudness_every_100_ms(tmp_path):
    # 10 s at -33 then 10 s at -23 dBFS (stereo, 48 kHz): Tech 3341's meters read the tones' levels.
    data = sequence((-33, 10), (-23, 10))
    path = write_float(tmp_path / "in" / "steps.wav", data)
    tables = []
    for block_seconds in (3600, 0.73):
        out = tmp_path / f"out{block_seconds}"
        result = audiokit.extract(
            [str(path)], str(out), extractors=["loudness_frames", "summary"], workers=1,
            overrides=[f"audio.block_seconds={block_seconds}"],
        )
        assert result.failed == 0
        tables.append(ds.dataset(out / "loudness_frames").to_table().sort_by("frame").to_pydict())
    rows = tables[0]
    assert rows == tables[1]
    assert rows["frame"] == list(range(200)) and np.allclose(rows["time_s"], np.arange(200) * 0.1)
    momentary, short_term = np.array(rows["momentary_lufs"]), np.array(rows["short_term_lufs"])
    assert np.abs(momentary[3:97] - -33).max() <= 0.1 and np.abs(momentary[103:198] - -23).max() <= 0.1
    assert np.abs(short_term[16:85] - -33).max() <= 0.1 and np.abs(short_term[116:185] - -23).max() <= 0.1
    # centred windows: the step shows up within half a window of 10 s
    assert momentary[97] < -25 < momentary[103] and short_term[85] < -25 < short_term[115]
    summary = ds.dataset(tmp_path / "out3600" / "summary").to_table().to_pylist()[0]
    assert summary["loudness_frames.momentary_lufs.p90"] == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("sample_rate", [11025, 44100, 96000])
def test_meter_streams_exactly_and_true_peak_equals_full_interpolation(sample_rate):
    from scipy.signal import sosfilt

    from audiokit.dsp.loudness import k_weighting_sos, oversampling_factor, quarter_boundaries, true_peak_filter
    from audiokit.extractors.loudness import LoudnessMeter

    rng = np.random.default_rng(sample_rate)
    n = int(2.35 * sample_rate)
    # Quiet noise with a few loud clicks and a loud burst: most chunks are skipped, some are not.
    x = (rng.standard_normal((2, n)) * 0.01).astype(np.float32)
    x[:, rng.integers(0, n, 5)] = rng.uniform(-0.9, 0.9, (2, 5)).astype(np.float32)
    x[1, n // 2 : n // 2 + 300] += np.sin(np.arange(300) * 2.9).astype(np.float32) * 0.7
    # Splits at random places, one of them right at a quarter's end (11025 Hz: 1102 samples).
    cuts = np.unique(np.concatenate([[0, n, 1102, 1103], rng.integers(1, n, 40)]))
    meters = [LoudnessMeter(2, sample_rate) for _ in range(2)]
    meters[0].push(x)
    for a, b in zip(cuts[:-1], cuts[1:]):
        meters[1].push(x[:, a:b])
    for meter in meters:
        meter.finish()
    whole, pieces = meters
    np.testing.assert_array_equal(whole.quarter_energies(), pieces.quarter_energies())
    assert whole.true_peak == pieces.true_peak
    # The quarters against scipy's filter, in float64, summed quarter by quarter.
    edges = quarter_boundaries(sample_rate, whole.quarters)
    y = sosfilt(k_weighting_sos(sample_rate), x.astype(np.float64), axis=-1)
    expected = [np.square(y[:, a:b]).sum() for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(whole.quarter_energies(), expected, rtol=1e-9)
    # Every oversampled value, the filter's tail included.
    phases = true_peak_filter(oversampling_factor(sample_rate))
    full = max(np.abs(np.convolve(ch.astype(np.float64), phase)).max() for ch in x for phase in phases)
    assert whole.true_peak == pytest.approx(full, rel=1e-6)


def test_true_peak_filter_is_firwins_kaiser_design():
    from scipy.signal import firwin

    from audiokit.dsp.loudness import true_peak_filter

    for factor in (2, 4):
        expected = firwin(factor * 12, 1.0 / factor, window=("kaiser", 6.0)) * factor
        np.testing.assert_allclose(true_peak_filter(factor), expected.reshape(12, factor).T, rtol=0, atol=1e-15)


def test_changing_the_channel_policy_does_not_redo_loudness(tmp_path):
    write_audio(tmp_path / "in" / "stereo.flac", sine(-20, 4, channels=2), SR)
    out = str(tmp_path / "out")
    code, first, _ = run_json("extract", str(tmp_path / "in"), "-o", out, "-x", "loudness,mfcc")
    assert code == 0 and first["processed"] == 1
    # mfcc follows the policy and is recomputed; loudness measures the native channels and is kept.
    code, again, _ = run_json("extract", str(tmp_path / "in"), "-o", out, "-x", "loudness,mfcc", "--set", "audio.channels=first")
    assert code == 0 and again["processed"] == 1
    files = ds.dataset(f"{out}/files").to_table().to_pylist()
    done = {entry.split(":")[0] for entry in files[0]["extractors"]}
    assert done == {"loudness", "mfcc"}
    code, third, _ = run_json("extract", str(tmp_path / "in"), "-o", out, "-x", "loudness", "--set", "audio.channels=each")
    assert code == 0 and third["processed"] == 0 and third["skipped"] == 1
