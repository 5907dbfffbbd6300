"""ITU-R BS.1770-4 loudness and EBU Tech 3342 loudness range, as pure functions.

The measurement is built from 100 ms *quarters*: the K-weighted, channel-weighted energy of
each tenth of a second. A 400 ms gating block (75 % overlap) is four consecutive quarters and
a 3 s short-term block thirty, so a stream only has to keep one number per 100 ms to give the
same figures as the whole file at once.
"""

from __future__ import annotations

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # BS.1770-4 integrated loudness
LRA_RELATIVE_GATE_LU = -20.0  # EBU Tech 3342
QUARTERS_PER_BLOCK = 4  # 400 ms gating block
QUARTERS_PER_SHORT_TERM = 30  # 3 s short-term block
TRUE_PEAK_TAPS_PER_PHASE = 12

# The K-weighting stages as analogue prototypes (shelf gain dB, centre Hz, Q; high-pass Hz, Q)
# whose bilinear transform at 48 kHz gives BS.1770-4's published coefficients to ~1e-8, so
# other sample rates get the same curve.
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_HZ = 1681.974450955533
_SHELF_Q = 0.7071752369554196
_SHELF_BOOST_SHARE = 0.4996667741545416
_HIGHPASS_HZ = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """The two K-weighting biquads (pre-filter shelf, RLB high-pass) for `sample_rate`, as
    `(2, 6)` second-order sections (b0 b1 b2 a0 a1 a2 each)."""
    k = np.tan(np.pi * _SHELF_HZ / sample_rate)
    v_high = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    v_band = v_high**_SHELF_BOOST_SHARE
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (v_high + v_band * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - v_high) / a0,
        (v_high - v_band * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    k = np.tan(np.pi * _HIGHPASS_HZ / sample_rate)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    # BS.1770 writes the high-pass numerator as (1, -2, 1) with no gain correction.
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770 weights G_i: 1.0 for front channels, 1.41 (+1.5 dB) for surrounds, 0 for LFE.

    Channels are taken in WAV/SMPTE order: five are L R C Ls Rs; six are 5.1 (L R C LFE Ls Rs).
    Any other count weighs every channel 1.0.
    """
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(channels)


def quarter_boundaries(sample_rate: int, count: int) -> np.ndarray:
    """Sample index where each of the first `count` + 1 quarters starts (`k * sr // 10`)."""
    return np.arange(count + 1, dtype=np.int64) * sample_rate // 10


def energy_to_lufs(mean_square: np.ndarray | float) -> np.ndarray:
    """Weighted mean square → loudness: -0.691 + 10 log10(Σ G_i z_i); zero gives -inf."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(mean_square)


def block_powers(quarter_energy: np.ndarray, quarter_lengths: np.ndarray, quarters: int) -> np.ndarray:
    """Mean weighted square of every block of `quarters` consecutive quarters (step 100 ms)."""
    count = quarter_energy.size - quarters + 1
    if count <= 0:
        return np.zeros(0)
    energy = np.convolve(quarter_energy, np.ones(quarters), mode="valid")
    samples = np.convolve(quarter_lengths.astype(np.float64), np.ones(quarters), mode="valid")
    return energy / samples


def gated_mean_power(powers: np.ndarray, relative_gate_lu: float) -> float:
    """The mean power of the blocks that pass the absolute gate (-70 LUFS) and then the relative
    gate (`relative_gate_lu` below the mean of those); 0.0 when none pass."""
    loudness = energy_to_lufs(powers)
    above_absolute = powers[loudness > ABSOLUTE_GATE_LUFS]
    if above_absolute.size == 0:
        return 0.0
    threshold = energy_to_lufs(above_absolute.mean()) + relative_gate_lu
    passed = above_absolute[energy_to_lufs(above_absolute) > threshold]
    return float(passed.mean()) if passed.size else 0.0


def integrated_loudness(quarter_energy: np.ndarray, quarter_lengths: np.ndarray) -> float | None:
    """BS.1770-4 gated integrated loudness (LUFS) from quarter energies; -inf when every block
    is below the absolute gate (silence), None when the signal is shorter than one block."""
    powers = block_powers(quarter_energy, quarter_lengths, QUARTERS_PER_BLOCK)
    if powers.size == 0:
        return None
    return float(energy_to_lufs(gated_mean_power(powers, RELATIVE_GATE_LU)))


def loudness_range(quarter_energy: np.ndarray, quarter_lengths: np.ndarray) -> float | None:
    """EBU Tech 3342 loudness range (LU): the spread between the 10th and 95th percentiles of
    the gated short-term loudness (3 s blocks every 100 ms; absolute gate -70 LUFS, relative
    gate 20 LU below their mean). None when the signal is shorter than one short-term block."""
    powers = block_powers(quarter_energy, quarter_lengths, QUARTERS_PER_SHORT_TERM)
    if powers.size == 0:
        return None
    loudness = energy_to_lufs(powers)
    above_absolute = powers[loudness > ABSOLUTE_GATE_LUFS]
    if above_absolute.size == 0:
        return 0.0
    threshold = energy_to_lufs(above_absolute.mean()) + LRA_RELATIVE_GATE_LU
    gated = loudness[loudness > max(threshold, ABSOLUTE_GATE_LUFS)]
    if gated.size == 0:
        return 0.0
    low, high = np.percentile(gated, [10.0, 95.0])
    return float(high - low)


def true_peak_filter(factor: int = 4, taps_per_phase: int = TRUE_PEAK_TAPS_PER_PHASE) -> np.ndarray:
    """Interpolation filter for true peak (BS.1770-4 Annex 2): a Kaiser-windowed (beta 6) sinc
    low-pass at the original Nyquist, `factor * taps_per_phase` taps, gain `factor`, returned as
    `(factor, taps_per_phase)` polyphase components (row p gives the samples at offset p/factor).
    The same taps as `scipy.signal.firwin(n, 1 / factor, window=("kaiser", 6.0)) * factor`,
    without importing scipy.signal (a second of start-up)."""
    count = factor * taps_per_phase
    cutoff = 1.0 / factor
    taps = cutoff * np.sinc(cutoff * (np.arange(count) - (count - 1) / 2.0)) * np.kaiser(count, 6.0)
    taps *= factor / taps.sum()  # unit gain at DC before the factor, as firwin scales
    return np.ascontiguousarray(taps.reshape(taps_per_phase, factor).T)


def oversampling_factor(sample_rate: int) -> int:
    """4x below 96 kHz, 2x below 192 kHz, else none: at least ~192 kHz as Annex 2 asks."""
    return 4 if sample_rate < 96000 else 2 if sample_rate < 192000 else 1


def to_db(amplitude: float) -> float:
    """20 log10(amplitude); -inf for 0."""
    return float(20.0 * np.log10(amplitude)) if amplitude > 0 else float("-inf")


__all__ = [
    "channel_weights",
    "energy_to_lufs",
    "integrated_loudness",
    "k_weighting_sos",
    "loudness_range",
    "oversampling_factor",
    "quarter_boundaries",
    "to_db",
    "true_peak_filter",
]
