"""Exporting a table to the formats other tools read: `audiokit export OUT --table T --format F`.

Span tables (`segments`): `rttm` (one file, NIST RTTM: one SPEAKER line per segment, the label
as the speaker name, the confidence in the confidence field), `csv` (one file), `audacity` (a
label track per file: `start<TAB>end<TAB>label`), `textgrid` (a Praat TextGrid per file, one
interval tier per channel). Frame tables and `embeddings`: `npy` (one array per file, float32
[shape=(frames, n)], or (channels, frames, n) for `channels = "each"`, plus `index.csv`) and
`csv` (one row per frame, vectors spread over columns `mfcc_0 … mfcc_19`).

Per-file outputs mirror the file's relpath under the output directory with the format's suffix
added (`music/a.flac` → `music/a.flac.npy`), so two files differing only in extension never
collide. Files are chosen with `where` (conditions on `files` columns, e.g.
`status = 'ok' and duration_s > 10`) and `include` (relpath globs); they go out in relpath order.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import numpy as np

from audiokit.errors import ConfigError, OutputError
from audiokit.reader import DatasetReader, feature_columns, table_kind, to_matrix

SPAN_FORMATS = ("rttm", "csv", "audacity", "textgrid")
ARRAY_FORMATS = ("npy", "csv")
SINGLE_FILE_FORMATS = ("rttm", "csv")  # written to one file, or stdout without -o
SUFFIXES = {"audacity": ".txt", "textgrid": ".TextGrid", "npy": ".npy"}


@dataclass
class ExportSummary:
    table: str
    format: str
    files: int = 0  # dataset files exported
    rows: int = 0
    written: list[str] = field(default_factory=list)
    output: str = "-"

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "format": self.format,
            "files": self.files,
            "rows": self.rows,
            "written": len(self.written),
            "output": self.output,
        }


def export(
    root: str | DatasetReader,
    *,
    table: str,
    format: str,
    out: str | None = None,
    where: str | None = None,
    include: Iterable[str] = (),
    stdout: io.TextIOBase | None = None,
) -> ExportSummary:
    """Write `table` of the dataset at `root` in `format` to `out` (a file or a directory, see
    the module docstring). Raises ConfigError for a bad table, format, filter or output."""
    reader = root if isinstance(root, DatasetReader) else DatasetReader(root)
    if table not in reader.table_names:
        raise ConfigError(f"no table {table!r} in {reader.root} (tables: {', '.join(reader.table_names) or 'none'})")
    kind = table_kind(reader.schema(table).names)
    allowed = SPAN_FORMATS if kind == "spans" else ARRAY_FORMATS if kind in ("frames", "embeddings") else ()
    if format not in allowed:
        raise ConfigError(
            f"--format {format!r} does not fit table {table!r} ({kind}); choose from: {', '.join(allowed)}"
        )
    if format not in SINGLE_FILE_FORMATS and not out:
        raise ConfigError(f"--format {format} writes one file per input file: give a directory with -o")
    rows = select_files(reader, where=where, include=include)
    summary = ExportSummary(table=table, format=format, output=os.path.abspath(out) if out else "-")
    try:
        if format in SINGLE_FILE_FORMATS:
            if out:
                os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
                with open(out, "w", newline="", encoding="utf-8") as f:
                    _write_single(reader, table, kind, format, rows, f, summary)
                summary.written.append(out)
            else:
                try:
                    _write_single(reader, table, kind, format, rows, stdout or sys.stdout, summary)
                except BrokenPipeError:  # `audiokit export … | head`: the reader has what it wanted
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
        else:
            os.makedirs(out, exist_ok=True)
            _write_per_file(reader, table, format, rows, out, summary)
    except OSError as exc:
        raise OutputError(f"cannot write {out or 'stdout'}: {exc.strerror or exc}") from None
    return summary


# -- choosing files ------------------------------------------------------------------------------

_CONDITION = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>==|=|!=|<>|<=|>=|<|>|\bglob\b|\bis not\b|\bis\b)\s*(?P<value>.+?)\s*$",
    re.IGNORECASE,
)


def parse_where(expression: str) -> list[tuple[str, str, object]]:
    """`status = 'ok' and duration_s >= 10 and relpath glob 'music/*' and error is null` →
    [(column, op, value)]. Values: 'quoted text', numbers, null, true/false."""
    conditions = []
    for clause in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _CONDITION.match(clause)
        if not match:
            raise ConfigError(
                f"--where: cannot read {clause!r}; write COLUMN OP VALUE joined by 'and', e.g. status = 'ok'"
            )
        column, op, raw = match["column"], match["op"].lower(), match["value"]
        op = {"==": "=", "<>": "!="}.get(op, op)
        conditions.append((column, op, _literal(raw, clause)))
    return conditions


def _literal(raw: str, clause: str):
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    lowered = raw.lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        raise ConfigError(f"--where: {raw!r} in {clause!r} is not a quoted text, a number or null") from None


def _holds(value, op: str, wanted) -> bool:
    if op in ("is", "is not"):
        if wanted is not None:
            raise ConfigError(f"--where: use 'is null' / 'is not null' (got is {wanted!r})")
        return (value is None) == (op == "is")
    if value is None or wanted is None:
        return False
    if op == "glob":
        return fnmatch.fnmatchcase(str(value), str(wanted))
    if isinstance(value, (int, float)) != isinstance(wanted, (int, float)) and op != "=" and op != "!=":
        raise ConfigError(f"--where: cannot compare {value!r} with {wanted!r}")
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    return {"<": value < wanted, "<=": value <= wanted, ">": value > wanted, ">=": value >= wanted}[op]


def select_files(reader: DatasetReader, *, where: str | None = None, include: Iterable[str] = ()) -> list[dict]:
    """`files` rows matching `where` and any of the `include` relpath globs, in relpath order."""
    include = list(include)
    conditions = parse_where(where) if where else []
    names = set(reader.files.column_names)
    for column, _, _ in conditions:
        if column not in names:
            raise ConfigError(
                f"--where: no column {column!r} in files (columns: {', '.join(reader.files.column_names)})"
            )
    columns = [c for c in reader.files.column_names if c != "processed_at"]
    chosen = []
    for row in reader.files.select(columns).to_pylist():
        relpath = row["relpath"] or ""
        if include and not any(
            fnmatch.fnmatchcase(relpath, g) or fnmatch.fnmatchcase(os.path.basename(relpath), g) for g in include
        ):
            continue
        if all(_holds(row[c], op, v) for c, op, v in conditions):
            chosen.append(row)
    return sorted(chosen, key=lambda r: r["relpath"] or "")


# -- one output file ------------------------------------------------------------------------------


def _write_single(reader, table, kind, format, rows, stream, summary: ExportSummary) -> None:
    if format == "rttm":
        for row in rows:
            segments = reader.rows(table, row["file_id"])
            lines = rttm_lines(row["relpath"], segments.to_pylist())
            stream.writelines(lines)
            _count(summary, len(lines))
        return
    writer = csv.writer(stream, lineterminator="\n")
    if kind == "spans":
        columns = [c for c in reader.schema(table).names if c != "file_id"]
        writer.writerow(["relpath", "file_id", *columns])
        for row in rows:
            segments = reader.rows(table, row["file_id"], columns=columns)
            for values in zip(*(segments.column(c).to_pylist() for c in columns)):
                writer.writerow([row["relpath"], row["file_id"], *(_csv_value(v) for v in values)])
            _count(summary, segments.num_rows)
        return
    schema = reader.schema(table)
    values = _value_columns(schema, kind)
    keys = [c for c in schema.names if c not in values and c != "file_id"]
    header = []
    for name in values:
        size = schema.field(name).type.list_size if hasattr(schema.field(name).type, "list_size") else None
        header += [f"{name}_{i}" for i in range(size)] if size else [name]
    writer.writerow(["relpath", "file_id", *keys, *header])
    for row in rows:
        data = reader.rows(table, row["file_id"], columns=keys + values)
        matrix = np.concatenate([to_matrix(data, [v]) for v in values], axis=1) if data.num_rows else None
        key_values = list(zip(*(data.column(c).to_pylist() for c in keys)))
        for i, key in enumerate(key_values):
            writer.writerow([row["relpath"], row["file_id"], *key, *(repr(float(x)) for x in matrix[i])])
        _count(summary, data.num_rows)


def _count(summary: ExportSummary, rows: int) -> None:
    if rows:
        summary.files += 1
        summary.rows += rows


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _value_columns(schema, kind: str) -> list[str]:
    if kind == "embeddings":
        return ["embedding"]
    return feature_columns(schema)


# -- one output file per input file ---------------------------------------------------------------


def _target(out: str, relpath: str, suffix: str) -> str:
    path = os.path.normpath(os.path.join(out, relpath + suffix))
    if not path.startswith(os.path.abspath(out) + os.sep) and not path.startswith(os.path.normpath(out) + os.sep):
        raise ConfigError(f"relpath {relpath!r} would be written outside {out}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _write_per_file(reader, table, format, rows, out, summary: ExportSummary) -> None:
    suffix = SUFFIXES[format]
    index = []
    schema = reader.schema(table)
    kind = table_kind(schema.names)
    for row in rows:
        if format == "npy":
            values = _value_columns(schema, kind)
            data = reader.rows(table, row["file_id"], columns=["channel", *values])
            if data.num_rows == 0:
                continue
            channels = sorted(set(data.column("channel").to_pylist()))
            matrix = to_matrix(data, values)
            if len(channels) > 1:
                matrix = matrix.reshape(len(channels), -1, matrix.shape[1])
            path = _target(out, row["relpath"], suffix)
            np.save(path, matrix)
            index.append(
                {
                    "relpath": row["relpath"],
                    "file_id": row["file_id"],
                    "npy": os.path.relpath(path, out),
                    "shape": "x".join(str(s) for s in matrix.shape),
                    "channels": len(channels),
                    "duration_s": row["duration_s"],
                }
            )
            summary.written.append(path)
            _count(summary, data.num_rows)
            continue
        segments = reader.rows(table, row["file_id"]).to_pylist()
        if not segments:
            continue
        path = _target(out, row["relpath"], suffix)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            if format == "audacity":
                f.writelines(audacity_lines(segments))
            else:
                f.write(textgrid(segments, duration_s=row["duration_s"]))
        summary.written.append(path)
        _count(summary, len(segments))
    if format == "npy":
        path = os.path.join(out, "index.csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(
                f, ["relpath", "file_id", "npy", "shape", "channels", "duration_s"], lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(index)
        summary.written.append(path)


# -- the formats ---------------------------------------------------------------------------------


def rttm_lines(relpath: str, segments: list[dict]) -> list[str]:
    """NIST RTTM: `SPEAKER <file> <channel, 1-based> <onset> <duration> <NA> <NA> <label> <confidence> <NA>`.
    The file field is the relpath with whitespace and `%` percent-encoded (RTTM splits on spaces)."""
    name = quote(relpath, safe="/:._-~+,=@()[]")
    return [
        f"SPEAKER {name} {s['channel'] + 1} {s['start_s']:.6f} {s['end_s'] - s['start_s']:.6f} <NA> <NA> "
        f"{s['label']} {s['confidence']:.6g} <NA>\n"
        for s in segments
    ]


def read_rttm(lines: Iterable[str]) -> Iterator[dict]:
    """The segments of RTTM lines (SPEAKER lines; others are skipped): relpath, channel, start_s,
    end_s, label, confidence (None when `<NA>`)."""
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER" or line.lstrip().startswith(";;"):
            continue
        if len(fields) < 9:
            raise ValueError(f"RTTM line {number}: {len(fields)} fields, expected 10")
        start, duration = float(fields[3]), float(fields[4])
        yield {
            "relpath": unquote(fields[1]),
            "channel": int(fields[2]) - 1,
            "start_s": start,
            "end_s": round(start + duration, 6),
            "label": fields[7],
            "confidence": None if fields[8] == "<NA>" else float(fields[8]),
        }


def audacity_lines(segments: list[dict]) -> list[str]:
    """An Audacity label track: `start<TAB>end<TAB>label` (channel in the label when there are several)."""
    several = len({s["channel"] for s in segments}) > 1
    lines = []
    for s in segments:
        label = f"{s['label']} (channel {s['channel']})" if several else s["label"]
        lines.append(f"{s['start_s']:.6f}\t{s['end_s']:.6f}\t{label}\n")
    return lines


def textgrid(segments: list[dict], *, duration_s: float | None) -> str:
    """A Praat TextGrid (long text format): one IntervalTier per channel; stretches no segment
    covers are intervals with empty text, as Praat requires tiers to cover the whole file."""
    end = max([duration_s or 0.0, *(s["end_s"] for s in segments)])
    channels = sorted({s["channel"] for s in segments})
    out = [
        'File type = "ooTextFile"\n',
        'Object class = "TextGrid"\n',
        "\n",
        "xmin = 0\n",
        f"xmax = {end:.6f}\n",
        "tiers? <exists>\n",
        f"size = {len(channels)}\n",
        "item []:\n",
    ]
    for tier, channel in enumerate(channels, 1):
        intervals, cursor = [], 0.0
        for s in sorted((s for s in segments if s["channel"] == channel), key=lambda s: s["start_s"]):
            if s["start_s"] > cursor + 1e-9:
                intervals.append((cursor, s["start_s"], ""))
            intervals.append((max(cursor, s["start_s"]), s["end_s"], s["label"]))
            cursor = s["end_s"]
        if end > cursor + 1e-9:
            intervals.append((cursor, end, ""))
        name = "segments" if len(channels) == 1 else f"segments channel {channel}"
        out += [
            f"    item [{tier}]:\n",
            '        class = "IntervalTier"\n',
            f'        name = "{name}"\n',
            "        xmin = 0\n",
            f"        xmax = {end:.6f}\n",
            f"        intervals: size = {len(intervals)}\n",
        ]
        for i, (start, stop, text) in enumerate(intervals, 1):
            out += [
                f"        intervals [{i}]:\n",
                f"            xmin = {start:.6f}\n",
                f"            xmax = {stop:.6f}\n",
                f'            text = "{text.replace(chr(34), chr(34) * 2)}"\n',
            ]
    return "".join(out)


__all__ = [
    "ExportSummary",
    "audacity_lines",
    "export",
    "parse_where",
    "read_rttm",
    "rttm_lines",
    "select_files",
    "textgrid",
]
