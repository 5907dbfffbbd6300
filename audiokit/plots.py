"""Pictures of a dataset: `audiokit show OUT PATH` (one file) and `audiokit report OUT` (a page).

One figure per file, four panels on one time axis: the waveform envelope (decoded from the file
in blocks, so memory does not grow with its length), a log-mel spectrogram (the dataset's
`logmel` table when it has one, else computed for the picture from the same decoded blocks),
the segments as a coloured band with their labels, and a loudness curve (the `loudness` table,
else `spectral`'s `rms` in dBFS, else an RMS computed for the picture). The title gives the
duration, format, rate, channels and the file's status.

The report is one HTML file with its images inline (data: URIs), no script and no external
resource, so it opens anywhere, offline, and can be mailed or archived as it is.

matplotlib is an optional extra (`pip install 'audiokit[plot]'`), imported here only, with the
Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from audiokit.errors import AudiokitError, ConfigError, OutputError
from audiokit.reader import DatasetReader, feature_columns, int_scalar

COLUMNS = 1200  # time columns of a figure: the envelope and the spectrogram are pooled to these
SEGMENT_COLOURS = {"speech": "#1f77b4", "music": "#ff7f0e", "noise": "#8c8c8c", "silence": "#e3e3e3"}
OTHER_COLOUR = "#2ca02c"
PICTURE_N_FFT = 2048
PICTURE_N_MELS = 96
DB_FLOOR = -100.0


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("pictures need matplotlib, which is not installed: pip install 'audiokit[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# -- what a figure shows ---------------------------------------------------------------------------


@dataclass
class AudioOverview:
    """A file decoded once, pooled to `columns` time columns."""

    sample_rate: int
    seconds: float
    times: np.ndarray  # column centres, s
    low: np.ndarray  # envelope: min and max sample per column
    high: np.ndarray
    rms_db: np.ndarray  # RMS per column, dBFS
    mel_db: np.ndarray  # [shape=(n_mels, columns)], dB


def audio_overview(
    path: str, *, duration_s: float | None = None, channel: int | None = None, columns: int = COLUMNS
) -> AudioOverview:
    """Decode `path` block by block (audiokit's decoder; channels averaged, or one `channel`)
    into an envelope, an RMS curve and a log-mel spectrogram of `columns` columns: one
    PICTURE_N_FFT window at the centre of each column. Memory: a block and the columns."""
    from audiokit.audio.decode import open_audio
    from audiokit.dsp import mel_filterbank, power_to_db, stft_window
    from audiokit.dsp.spectrum import power_spectrum

    with open_audio(path) as audio:
        sr = audio.info.sample_rate
        seconds = duration_s or audio.info.duration_hint_s
        if not seconds:
            seconds = sum(b.shape[0] for b in audio.blocks(sr * 10)) / sr
    total = max(1, int(round(seconds * sr)))
    columns = max(1, min(columns, total // 16 or 1))
    per_column = total / columns
    centres = ((np.arange(columns) + 0.5) * per_column).astype(np.int64)
    half = PICTURE_N_FFT // 2
    low = np.full(columns, np.inf, dtype=np.float32)
    high = np.full(columns, -np.inf, dtype=np.float32)
    sumsq = np.zeros(columns)
    counts = np.zeros(columns)
    window = stft_window(PICTURE_N_FFT)
    basis = mel_filterbank(sr=sr, n_fft=PICTURE_N_FFT, n_mels=PICTURE_N_MELS)
    mel = np.zeros((columns, PICTURE_N_MELS), dtype=np.float32)
    history = np.zeros(0, dtype=np.float32)  # samples before the block still needed by a window
    history_start = 0
    next_column = 0
    position = 0

    def spectra(samples: np.ndarray, start: int, until: int) -> None:
        """Windows centred on the columns whose window ends before `until` (zero past the edges)."""
        nonlocal next_column
        chosen = []
        while next_column < columns and centres[next_column] + half <= until:
            chosen.append(next_column)
            next_column += 1
        if not chosen:
            return
        frames = np.zeros((len(chosen), PICTURE_N_FFT), dtype=np.float32)
        for row, col in enumerate(chosen):
            a, b = centres[col] - half - start, centres[col] + half - start
            piece = samples[max(a, 0) : max(b, 0)]
            frames[row, max(-a, 0) : max(-a, 0) + piece.shape[0]] = piece
        mel[chosen] = power_spectrum(frames, window) @ basis.T

    with open_audio(path) as audio:
        for block in audio.blocks(sr * 10):
            y = block[:, channel] if channel is not None else block.mean(axis=1, dtype=np.float32)
            if y.size == 0:
                continue
            idx = np.minimum(((position + np.arange(y.size)) / per_column).astype(np.int64), columns - 1)
            starts = np.flatnonzero(np.diff(idx, prepend=-1))
            cols = idx[starts]
            np.minimum.at(low, cols, np.minimum.reduceat(y, starts))
            np.maximum.at(high, cols, np.maximum.reduceat(y, starts))
            np.add.at(sumsq, cols, np.add.reduceat(y.astype(np.float64) ** 2, starts))
            np.add.at(counts, cols, np.diff(np.append(starts, y.size)))
            samples = np.concatenate([history, y])
            spectra(samples, history_start, position + y.size)
            position += y.size
            keep = min(samples.size, PICTURE_N_FFT)
            history, history_start = samples[samples.size - keep :], position - keep
    spectra(np.concatenate([history, np.zeros(half, np.float32)]), history_start, 1 << 62)
    empty = counts == 0
    low[empty] = high[empty] = 0.0
    rms = np.sqrt(sumsq / np.maximum(counts, 1))
    return AudioOverview(
        sample_rate=sr,
        seconds=position / sr if position else seconds,
        times=(np.arange(columns) + 0.5) * per_column / sr,
        low=low,
        high=high,
        rms_db=np.maximum(20 * np.log10(np.maximum(rms, 1e-10)), DB_FLOOR),
        mel_db=power_to_db(mel.T, top_db=80.0),
    )


def _pooled_table(reader: DatasetReader, table: str, path: str, column: str, channel: int | None, seconds: float):
    """One file's `column` of a frame table pooled (mean) to at most COLUMNS time columns:
    (times, values [shape=(columns, n)]), read a row group at a time. None when it has no rows."""
    from audiokit.reader import to_matrix

    if seconds <= 0:
        return None
    sums = counts = None
    for piece in reader.iter_rows(table, path, columns=["time_s", column]):
        if channel is not None:
            import pyarrow.compute as pc

            piece = piece.filter(pc.equal(piece.column("channel"), int_scalar(channel)))
        elif piece.num_rows:
            import pyarrow.compute as pc

            piece = piece.filter(pc.equal(piece.column("channel"), pc.min(piece.column("channel"))))
        if piece.num_rows == 0:
            continue
        values = to_matrix(piece, [column])
        cols = np.minimum((piece.column("time_s").to_numpy() / seconds * COLUMNS).astype(np.int64), COLUMNS - 1)
        if sums is None:
            sums = np.zeros((COLUMNS, values.shape[1]))
            counts = np.zeros(COLUMNS)
        np.add.at(sums, cols, values)
        np.add.at(counts, cols, 1)
    if sums is None:
        return None
    used = counts > 0
    times = (np.arange(COLUMNS) + 0.5) / COLUMNS * seconds
    return times[used], (sums[used] / counts[used, None]).astype(np.float32)


def loudness_column(reader: DatasetReader) -> str | None:
    """The curve to draw from a `loudness` table: its first scalar column, preferring momentary
    loudness (the table is another extractor's: this reads whatever it holds)."""
    if "loudness" not in reader.table_names:
        return None
    schema = reader.schema("loudness")
    scalars = [c for c in feature_columns(schema) if not hasattr(schema.field(c).type, "list_size")]
    for preferred in ("momentary", "lufs", "loudness"):
        for name in scalars:
            if preferred in name:
                return name
    return scalars[0] if scalars else None


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


def file_figure(reader: DatasetReader, path: str, *, channel: int | None = None):
    """The matplotlib Figure of one file (see the module docstring)."""
    plt = _pyplot()
    row = reader.file(path)
    tables = set(reader.table_names)
    per_channel = _table_channels(reader, path)
    if channel is None and len(per_channel) > 1:  # `channels = "each"`: draw one channel, say which
        channel = per_channel[0]
    if channel is not None and channel not in (per_channel or range(row["channels"] or 0)):
        known = per_channel or list(range(row["channels"] or 0))
        raise ConfigError(f"--channel {channel}: {row['relpath']} has channels {known}")
    seconds = row["duration_s"]
    overview, audio_problem = None, None
    try:
        if row["path"] and os.path.exists(row["path"]):
            overview = audio_overview(row["path"], duration_s=seconds, channel=channel)
            seconds = seconds or overview.seconds
        else:
            audio_problem = f"audio not found at {row['path']}"
    except AudiokitError as exc:
        audio_problem = f"cannot decode: {exc}"
    except (ValueError, IndexError) as exc:  # e.g. channel out of range
        audio_problem = f"cannot draw the audio: {exc}"
    seconds = seconds or 0.0

    fig, axes = plt.subplots(
        4, 1, figsize=(10, 6.2), dpi=90, sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [1.1, 2.2, 0.45, 1.1]},
    )  # fmt: skip
    wave_ax, mel_ax, seg_ax, loud_ax = axes
    status = row["status"] or "?"
    title = (
        f"{row['relpath']}  ·  {_fmt_duration(row['duration_s'])}  ·  {row['format'] or '?'}  ·  "
        f"{row['sample_rate'] or '?'} Hz  ·  {row['channels'] or '?'} ch  ·  status: {status}"
    )
    if channel is not None:
        title += f"  ·  channel {channel}" + (f" of {per_channel}" if len(per_channel) > 1 else "")
    if status != "ok":
        title += f"\n{row['error_kind']}: {(row['error'] or '')[:110]}"
    fig.suptitle(title, fontsize=9.5, color="#b00020" if status != "ok" else "black", x=0.01, ha="left")

    def note(ax, text: str) -> None:
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#666666")

    # Waveform envelope.
    if overview is not None:
        wave_ax.fill_between(overview.times, overview.low, overview.high, color="#3b6ea8", linewidth=0)
        wave_ax.set_ylim(-1.05, 1.05)
    else:
        note(wave_ax, audio_problem or "no audio")
    wave_ax.set_ylabel("waveform", fontsize=8)

    # Log-mel.
    pooled = _pooled_table(reader, "logmel", path, "logmel", channel, seconds) if "logmel" in tables else None
    if pooled is not None:
        times, values = pooled
        step = float(np.median(np.diff(times))) if times.size > 1 else seconds or 1.0
        mel_ax.imshow(
            values.T, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
            extent=(times[0] - step / 2, times[-1] + step / 2, 0, values.shape[1]),
        )  # fmt: skip
        mel_ax.set_ylabel("log-mel\n(logmel table)", fontsize=8)
    elif overview is not None and overview.mel_db.size:
        step = overview.times[1] - overview.times[0] if overview.times.size > 1 else seconds
        mel_ax.imshow(
            overview.mel_db, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
            extent=(0, overview.times[-1] + step / 2, 0, overview.mel_db.shape[0]),
        )  # fmt: skip
        mel_ax.set_ylabel("log-mel\n(computed)", fontsize=8)
    else:
        note(mel_ax, "no logmel table and no audio")
        mel_ax.set_ylabel("log-mel", fontsize=8)
    mel_ax.set_yticks([])

    # Segments.
    seg_ax.set_yticks([])
    seg_ax.set_ylabel("segments", fontsize=8, rotation=0, ha="right", va="center")
    if "segments" in tables:
        segments = reader.segments(path).to_pylist()
        if channel is not None:
            segments = [s for s in segments if s["channel"] == channel]
        elif segments:
            first = min(s["channel"] for s in segments)
            segments = [s for s in segments if s["channel"] == first]
        for s in segments:
            colour = SEGMENT_COLOURS.get(s["label"], OTHER_COLOUR)
            seg_ax.axvspan(s["start_s"], s["end_s"], color=colour, linewidth=0)
            if seconds and (s["end_s"] - s["start_s"]) > seconds * 0.04:
                seg_ax.text((s["start_s"] + s["end_s"]) / 2, 0.5, s["label"], ha="center", va="center", fontsize=7.5,
                            color="black" if s["label"] in ("silence", "music") else "white")  # fmt: skip
        if not segments:
            note(seg_ax, "no segments for this file")
    else:
        note(seg_ax, "no segments table")

    # Loudness or RMS.
    curve = None
    loudness = loudness_column(reader)
    if loudness is not None:
        pooled = _pooled_table(reader, "loudness", path, loudness, channel, seconds)
        if pooled is not None:
            curve = (pooled[0], pooled[1][:, 0], f"{loudness}\n(loudness)")
    if curve is None and "spectral" in tables:
        pooled = _pooled_table(reader, "spectral", path, "rms", channel, seconds)
        if pooled is not None:
            db = np.maximum(20 * np.log10(np.maximum(pooled[1][:, 0], 1e-10)), DB_FLOOR)
            curve = (pooled[0], db, "RMS dBFS\n(spectral)")
    if curve is None and overview is not None:
        curve = (overview.times, overview.rms_db, "RMS dBFS\n(computed)")
    if curve is not None:
        loud_ax.plot(curve[0], curve[1], color="#2f7d32", linewidth=0.9)
        loud_ax.set_ylabel(curve[2], fontsize=8)
        finite = curve[1][np.isfinite(curve[1])]
        if finite.size:
            top = float(finite.max())
            loud_ax.set_ylim(max(float(finite.min()), top - 70) - 3, top + 3)
    else:
        note(loud_ax, "no loudness, spectral or audio")
    loud_ax.set_xlabel("time (s)", fontsize=8)
    if seconds:
        loud_ax.set_xlim(0, seconds)
    for ax in axes:
        ax.tick_params(labelsize=7)
    return fig


def _table_channels(reader: DatasetReader, path: str) -> list[int]:
    """The `channel` values of the file's rows in its first table that has any."""
    for table in reader.table_names:
        rows = reader.rows(table, path, columns=["channel"])
        if rows.num_rows:
            return sorted(set(rows.column("channel").to_pylist()))
    return []


def figure_png(fig) -> bytes:
    """The figure as a 256-colour PNG: a third of the size of matplotlib's RGBA file (the noise
    of a spectrogram is what costs) with no visible change; Pillow comes with matplotlib."""
    from PIL import Image

    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show_file(root: str, path: str, output: str | None = None, *, channel: int | None = None) -> str:
    """Write the figure of one file as PNG (default: `<file name>.png` here); returns the path."""
    reader = DatasetReader(root)
    row = reader.file(path)
    output = output or os.path.basename(row["relpath"] or row["file_id"]) + ".png"
    png = figure_png(file_figure(reader, path, channel=channel))
    _write(output, png)
    return output


def _write(path: str, data: bytes | str) -> None:
    tmp = f"{path}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(
            tmp, "wb" if isinstance(data, bytes) else "w", **({} if isinstance(data, bytes) else {"encoding": "utf-8"})
        ) as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- the report ----------------------------------------------------------------------------------


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _histogram(values, *, title: str, xlabel: str, bins: int = 30, log: bool = False) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.6), dpi=90)
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if values.size:
        if log and values.min() > 0 and values.max() / values.min() > 20:
            bins = np.geomspace(values.min(), max(values.max(), values.min() * 1.01), bins)
            ax.set_xscale("log")
        ax.hist(values, bins=bins, color="#3b6ea8")
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("files", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return figure_png(fig)


def _bars(counts: Counter, *, title: str, limit: int = 12) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.6), dpi=90)
    items = counts.most_common(limit)
    if items:
        labels = [str(k) for k, _ in items][::-1]
        ax.barh(labels, [v for _, v in items][::-1], color="#3b6ea8")
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("files", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return figure_png(fig)


def _speech_share(reader: DatasetReader, durations: dict[str, float]) -> list[float]:
    """Per file: the share of its duration that the segments table labels speech."""
    import pyarrow.dataset as pads

    parts = sorted({p for ps in reader._part_index("segments").values() for p in ps})
    if not parts:
        return []
    table = pads.dataset(parts).to_table(columns=["file_id", "channel", "start_s", "end_s", "label"])
    speech: dict[str, float] = {}
    for file_id, channel, start, end, label in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        if file_id in durations and channel == 0:
            speech[file_id] = speech.get(file_id, 0.0) + (end - start if label == "speech" else 0.0)
    return [min(1.0, speech.get(f, 0.0) / d) for f, d in durations.items() if d]


def _loudness_per_file(reader: DatasetReader, column: str) -> list[float]:
    """Per file: the median of the loudness table's curve (finite values)."""
    import pyarrow.dataset as pads

    parts = sorted({p for ps in reader._part_index("loudness").values() for p in ps})
    if not parts:
        return []
    table = pads.dataset(parts).to_table(columns=["file_id", column])
    values: dict[str, list[float]] = {}
    for file_id, value in zip(table.column("file_id").to_pylist(), table.column(column).to_pylist()):
        if file_id in reader._row_of and value is not None and math.isfinite(value):
            values.setdefault(file_id, []).append(value)
    return [float(np.median(v)) for v in values.values() if v]


def _table(headers: list[str], rows: list[list], *, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1f; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.meta { color: #666; } .cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 120px; }
.card b { display: block; font-size: 22px; } .bad b { color: #b00020; } .ok b { color: #2f7d32; }
table { border-collapse: collapse; margin: 6px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td { font-variant-numeric: tabular-nums; } .failures td:last-child { font-family: monospace; font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; } img { max-width: 100%; border: 1px solid #eee; }
"""

MAX_FAILURE_ROWS = 500


def report_html(root: str, *, figures: int = 4) -> str:
    """The audit page of the dataset at `root` (see the module docstring)."""
    reader = DatasetReader(root)
    rows = [r for r in reader.files.drop_columns(["processed_at"]).to_pylist()]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    kinds = Counter(r["error_kind"] or "?" for r in failed)
    audio_s = sum(r["duration_s"] or 0.0 for r in ok)
    parts = []
    parts.append(f"<h1>audiokit report</h1><p class='meta'>{html.escape(reader.root)} · written "
                 f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>")  # fmt: skip
    cards = [
        ("files", len(rows), ""),
        ("ok", len(ok), "ok"),
        ("failed", len(failed), "bad" if failed else "ok"),
        ("of audio", _fmt_duration(audio_s), ""),
    ]
    parts.append(
        "<div class='cards'>"
        + "".join(f"<div class='card {c}'><b>{html.escape(str(v))}</b>{html.escape(k)}</div>" for k, v, c in cards)
        + "</div>"
    )

    parts.append("<h2>Status</h2>")
    status_rows = [[s, n] for s, n in Counter(r["status"] for r in rows).most_common()]
    parts.append(_table(["status", "files"], status_rows))
    if kinds:
        parts.append(_table(["error kind", "files"], [[k, n] for k, n in kinds.most_common()]))

    parts.append(f"<h2>Failures ({len(failed)})</h2>")
    if failed:
        shown = sorted(failed, key=lambda r: r["relpath"] or "")[:MAX_FAILURE_ROWS]
        parts.append(_table(["relpath", "error kind", "format", "size (bytes)", "error"],
                            [[r["relpath"], r["error_kind"], r["format"], r["size_bytes"], r["error"]] for r in shown], cls="failures"))  # fmt: skip
        if len(failed) > len(shown):
            parts.append(
                f"<p>… and {len(failed) - len(shown)} more (all of them: <code>audiokit info OUT --failed</code>).</p>"
            )
    else:
        parts.append("<p>No file failed.</p>")

    parts.append("<h2>Distributions (files with status ok)</h2><div class='grid'>")
    durations = [r["duration_s"] for r in ok]
    parts.append(_img(_histogram(durations, title="duration", xlabel="seconds", log=True), "durations"))
    parts.append(_img(_bars(Counter(f"{r['sample_rate']} Hz" for r in ok), title="native sample rate"), "sample rates"))
    parts.append(_img(_bars(Counter(r["format"] for r in ok), title="format"), "formats"))
    parts.append(_img(_bars(Counter(f"{r['channels']} ch" for r in ok), title="channels"), "channels"))
    loudness = loudness_column(reader)
    if loudness is not None:
        values = _loudness_per_file(reader, loudness)
        parts.append(
            _img(_histogram(values, title=f"loudness (median {loudness} per file)", xlabel=loudness), "loudness")
        )
    if "segments" in reader.table_names:
        share = _speech_share(reader, {r["file_id"]: r["duration_s"] for r in ok if r["duration_s"]})
        parts.append(
            _img(
                _histogram(share, title="speech share per file (segments)", xlabel="share of duration", bins=20),
                "speech share",
            )
        )
    parts.append("</div>")

    parts.append("<h2>Tables</h2>")
    parts.append(_table(["table", "rows", "parts", "columns"],
                        [[t.name, f"{t.rows:,}", t.parts, ", ".join(t.columns)] for t in reader.tables.values()]))  # fmt: skip

    parts.append("<h2>Last runs</h2>")
    runs = _last_runs(reader.root)
    if runs:
        parts.append(_table(["started", "wall s", "processed", "skipped", "failed", "exit", "stopped", "warnings"],
                            [[r.get("started"), r.get("wall_s"), r.get("processed"), r.get("skipped"), r.get("failed"),
                              r.get("exit_status"), r.get("stopped") or "", len(r.get("warnings") or [])] for r in runs]))  # fmt: skip
    else:
        parts.append("<p>No run log (<code>_audiokit/runs.jsonl</code>).</p>")

    chosen = _sample(ok, figures)
    if chosen:
        parts.append(f"<h2>Files ({len(chosen)} of {len(ok)})</h2>")
        for r in chosen:
            parts.append(f"<h3>{html.escape(r['relpath'])}</h3>")
            parts.append(_img(figure_png(file_figure(reader, r["file_id"])), r["relpath"]))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>audiokit report · {html.escape(os.path.basename(reader.root))}</title><style>{CSS}</style></head>"
        "<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _sample(rows: list[dict], count: int) -> list[dict]:
    """`count` files spread over the relpath order (the same ones every time)."""
    rows = sorted(rows, key=lambda r: r["relpath"] or "")
    if count <= 0 or not rows:
        return []
    if len(rows) <= count:
        return rows
    return [rows[int(i * (len(rows) - 1) / max(count - 1, 1))] for i in range(count)]


def _last_runs(root: str, count: int = 10) -> list[dict]:
    from audiokit.store.schema import META_DIR

    path = os.path.join(root, META_DIR, "runs.jsonl")
    if not os.path.exists(path):
        return []
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                runs.append(json.loads(line))
            except ValueError:  # a line cut by a full disk: the others still count
                continue
    return runs[-count:][::-1]


def write_report(root: str, output: str | None = None, *, figures: int = 4) -> str:
    """Write the report page (default: `report.html` here); returns its path."""
    if figures < 0:
        raise ConfigError("--figures must be 0 or more")
    page = report_html(root, figures=figures)
    output = output or "report.html"
    _write(output, page)
    return output


__all__ = ["AudioOverview", "audio_overview", "file_figure", "report_html", "show_file", "write_report"]
