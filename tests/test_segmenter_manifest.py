"""scripts/make_segmenter_manifest.py: training rows never share a source or a speaker with the
dev mixes' recordings, and the script refuses a manifest that would."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import NO_SHARED_DATA, REPO, SHARED_DATA

from scripts.make_segmenter_manifest import dev_identities, identities, manifest_rows, overlap


def test_one_speaker_in_two_repositories_is_one_identity():
    dev = identities("coqui-ai__TTS/LJ001-0001.flac", "Public domain (LJSpeech); repo MPL-2.0", "speaker=LJ")
    train = identities("lhotse/LJ002-0020.wav", "Public domain (LJSpeech)")
    assert "speaker:LJSpeech/LJ" in dev & train
    libri_dev = identities("wenet/librispeech-1995-1837-0001.flac", "CC-BY-4.0 (LibriSpeech)")
    assert "speaker:LibriSpeech/1995" in libri_dev
    assert not libri_dev & identities("lhotse/2412-153948-0000.flac", "CC-BY-4.0 (LibriSpeech)")
    rows = [{"path": "lhotse/LJ002-0020.wav", "identities": train}]
    assert overlap(rows, {key: "TTS/LJ001-0001.flac" for key in dev}) == [
        "lhotse/LJ002-0020.wav and dev TTS/LJ001-0001.flac (speaker:LJSpeech/LJ)"
    ]


def test_the_training_manifest_shares_nothing_with_the_dev_mixes(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_SHARED_DATA)
    dev = dev_identities(SHARED_DATA)
    assert "speaker:LJSpeech/LJ" in dev  # the dev group TTS
    rows = manifest_rows(SHARED_DATA, None)
    assert rows and overlap(rows, dev) == []
    assert not any("LJ002-0020" in r["path"] for r in rows)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_segmenter_manifest.py"), str(tmp_path / "m.csv"),
         "--data", str(SHARED_DATA)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.csv").read_text().count("\n") == len(rows) + 1
