"""The GE2E reference numbers that tests/test_embeddings.py checks audiokit's model against.

    python scripts/make_embedding_reference.py

Runs the original implementation (resemblyzer's `VoiceEncoder.embed_utterance`, official
weights, 1.6 s windows every 0.8 s) on `reference_signal()`, audio generated here (no data
file), and prints `PROJECTIONS` numbers per full window, the embedding projected on fixed random
unit directions (`projection()`: every one of the 256 values counts, unlike a few of them, most
of which ReLU zeroes), as a Python literal for `GE2E_REFERENCE` in the test. Rerun it only if the
signal, the projection or the model's weights change.
Needs torch, resemblyzer (+ webrtcvad).
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np

SAMPLE_RATE = 16000
SECONDS = 4.0  # windows at 0, 0.8, 1.6 and 2.4 s, all inside the signal
PROJECTIONS = 8


def projection(dims: int = 256) -> np.ndarray:
    """`(dims, PROJECTIONS)`: fixed random unit columns."""
    matrix = np.random.default_rng(256).standard_normal((dims, PROJECTIONS))
    return matrix / np.linalg.norm(matrix, axis=0)


def reference_signal() -> np.ndarray:
    """4 s at 16 kHz, float32: a voiced harmonic sound with gliding pitch, syllable-rate
    loudness and a little noise (speech-like enough for a speaker encoder to respond to)."""
    rng = np.random.default_rng(19)
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    f0 = 140.0 * 2 ** (3 / 12 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonics = sum(np.sin(k * phase) * np.exp(-((k * f0 - 700) ** 2) / 2e5) / k for k in range(1, 40))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    y = 0.3 * harmonics * syllables + 0.003 * rng.standard_normal(t.size)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def original_partials(samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(start_s, embedding) of each full 1.6 s window, from resemblyzer itself."""
    if importlib.util.find_spec("pkg_resources") is None:
        # webrtcvad 2.0.10 reads its version through pkg_resources, gone from new setuptools.
        sys.modules["pkg_resources"] = types.SimpleNamespace(
            get_distribution=lambda name: types.SimpleNamespace(version="unknown")
        )
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    _, partials, slices = encoder.embed_utterance(samples, return_partials=True, rate=1.25, min_coverage=0.5)
    return [(sl.start / SAMPLE_RATE, vec) for vec, sl in zip(partials, slices) if sl.stop <= len(samples)]


def main() -> None:
    rows = original_partials(reference_signal())
    print("GE2E_REFERENCE = {  # window start (s) -> projections, from scripts/make_embedding_reference.py")
    for start, vec in rows:
        values = ", ".join(f"{v:.5f}" for v in vec @ projection(vec.size))
        print(f"    {start:.1f}: [{values}],")
    print("}")


if __name__ == "__main__":
    main()
