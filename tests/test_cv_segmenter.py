"""scripts/cv_segmenter.py's diagnostics. The per-kind report: every test-mix part is named by
what was built (singing apart from music, the bed's level band for speech over music or noise),
the parts tile the labelled mix, and the report counts what the segments call each part's
frames. The audit: each group through the networks of the fold that never saw it. And the
training script's two kinds of network train on the same programmes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NO_SHARED_DATA, SHARED_DATA

import scripts.cv_segmenter as cv
from audiokit.models.segmenter import window_statistics

LABEL_OF_KIND = {"speech_over_music": "speech", "speech_under_noise": "speech", "singing": "music"}


def _pools(rng) -> dict:
    def recordings(make):
        return {"g": [make(int(cv.SR * rng.uniform(2, 6))).astype(np.float32) for _ in range(3)]}

    t = lambda n: np.arange(n) / cv.SR  # noqa: E731
    return {
        "speech": recordings(lambda n: rng.standard_normal(n) * (np.sin(2 * np.pi * 4 * t(n)) > 0)),
        "music": recordings(lambda n: np.sin(2 * np.pi * 440 * t(n))),
        "singing": recordings(lambda n: np.sin(2 * np.pi * 220 * t(n) + 3 * np.sin(2 * np.pi * 5 * t(n)))),
        "noise": recordings(lambda n: rng.standard_normal(n)),
    }


def test_parts_tile_the_mix_and_name_what_was_built():
    rng = np.random.default_rng(3)
    pools = _pools(rng)
    kinds = set()
    for _ in range(4):
        y, labels, parts = cv.test_mix(rng, pools, 120.0)
        assert len(parts) == len(labels)
        assert parts[0][0] == 0.0 and abs(parts[-1][1] - len(y) / cv.SR) < 1e-6
        for (start, end, label), part in zip(labels, parts):
            assert (start, end) == part[:2]
            kind, snr = part[2], part[3]
            assert LABEL_OF_KIND.get(kind, kind) == label
            assert (snr is not None) == kind.startswith("speech_")
            if kind == "speech_over_music":
                assert 3 <= snr <= 20
            kinds.add(cv.kind_of(part))
    assert {"speech", "music", "singing", "noise", "silence"} <= kinds
    assert any(k.startswith("speech_over_music ") and k.endswith(" dB") for k in kinds)


def test_kind_bands():
    assert cv.kind_of((0, 1, "music", None)) == "music"
    assert cv.kind_of((0, 1, "speech_over_music", 3.0)) == "speech_over_music 3-8 dB"
    assert cv.kind_of((0, 1, "speech_over_music", 8.0)) == "speech_over_music 8-14 dB"
    assert cv.kind_of((0, 1, "speech_under_noise", 19.9)) == "speech_under_noise 14-20 dB"


def test_the_report_counts_what_the_segments_call_each_part():
    if not SHARED_DATA.is_dir():  # the scorer is ../shared/eval/seg_score.py
        pytest.skip(NO_SHARED_DATA)
    scorer = cv.load_score_module()
    labels = [(0.0, 10.0, "speech"), (10.0, 20.0, "music")]
    parts = [(0.0, 10.0, "speech_over_music", 5.0), (10.0, 20.0, "singing", None)]
    mix = {"features": np.zeros((500, 1), np.float32), "level": np.zeros(500, np.float32),
           "frames": None, "labels": labels, "parts": parts, "seconds": 20.0}
    _, confusion, by_kind = cv.score_fold(_Always(1), [mix], cv.smoothing(), scorer)
    # 10 s less the 0.25 s collar at both ends: 950 frames each, all called music
    assert by_kind["speech_over_music 3-8 dB"].tolist() == [0, 950, 0]
    assert by_kind["singing"].tolist() == [0, 950, 0]
    # the confusion leaves the collar out around every boundary: 0-0.25, 9.75-10.25, 19.75-20 s
    assert confusion.tolist() == [[0, 950, 0], [0, 950, 0], [0, 0, 0]]


class _Always:
    """A classifier (of MLPs only) that calls every decision one class."""

    convnets = ()

    def __init__(self, index: int):
        self.index = index

    def probabilities(self, features, frames=None):
        p = np.zeros((len(features), 3), np.float32)
        p[:, self.index] = 1.0
        return p


def test_the_audit_lists_groups_by_agreement_with_their_label(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for group, label in (("tones", "music"), ("talk", "speech"), ("hiss", "noise")):
        path = tmp_path / f"{group}.flac"
        sf.write(path, (0.3 * rng.standard_normal(cv.SR * 3)).astype(np.float32), cv.SR)
        rows.append({"path": str(path), "label": label, "group": group})
    fold_of = {"tones": 0, "talk": 1, "hiss": 1}
    # fold 0's sources go through networks that call everything music, fold 1's speech
    groups = cv.audit_groups(rows, fold_of, {0: _Always(1), 1: _Always(0)}, tmp_path / "cache")
    by_name = {g["group"]: g for g in groups}
    assert by_name["tones"]["agreement"] == 1.0 and by_name["talk"]["agreement"] == 1.0
    assert by_name["hiss"]["agreement"] == 0.0 and by_name["hiss"]["called"] == [1.0, 0.0, 0.0]
    assert groups[0]["group"] == "hiss" and by_name["tones"]["minutes"] == 0.1


def test_convnets_and_mlps_train_on_the_same_programmes():
    """`build_sequences` draws what `build_set` draws: the MLPs' training rows are the
    window statistics of the ConvNets' sequences at the decisions they train on."""
    pools = _pools(np.random.default_rng(5))
    x, y, seconds = cv.ts.build_set(np.random.default_rng(6), pools, 2, 3)
    sequences, seconds_too = cv.ts.build_sequences(np.random.default_rng(6), pools, 2, 3)
    assert seconds == seconds_too
    rows, targets = [], []
    for frames, target in sequences:
        base = frames[~np.isnan(frames[:, 0])][None]  # the file's frames, padding dropped
        trained = np.flatnonzero(target >= 0)
        rows.append(window_statistics(base, 0, 2 * trained, base.shape[1])[0])
        targets.append(target[trained])
    np.testing.assert_array_equal(np.concatenate(targets), y)
    np.testing.assert_allclose(np.concatenate(rows), x, rtol=1e-5, atol=1e-5)
