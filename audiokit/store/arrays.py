"""Arrow arrays built from buffers.

pyarrow's conversion of Python objects and numpy arrays (`pa.array`, `from_pylist`) imports
pandas whenever pandas is installed: about 0.15 s in every worker and again in the writer, 12 %
of a run over half an hour of audio. Arrays built here from numpy buffers never take that path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def numeric(values: np.ndarray, type: pa.DataType | None = None, *, valid: np.ndarray | None = None) -> pa.Array:
    """A 1-D numpy array as an Arrow array (zero copy when contiguous); `valid` marks non-nulls."""
    values = np.ascontiguousarray(values).reshape(-1)
    type = type or pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(type, len(values), [_validity(valid), pa.py_buffer(values)])


def strings(values: Sequence[str | None]) -> pa.Array:
    """`pa.array(values, pa.string())`; None becomes null."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    valid = np.array([v is not None for v in values], dtype=bool)
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [_validity(valid), pa.py_buffer(offsets), data])


def repeated(value: str, count: int) -> pa.Array:
    """`count` copies of one string (a file's id on each of its rows); unlike `pa.repeat` it
    does not import pyarrow.compute (30 ms of start-up)."""
    encoded = value.encode()
    offsets = np.arange(count + 1, dtype=np.int32) * np.int32(len(encoded))  # a batch's rows: < 2 GiB
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(encoded * count)])


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """`pa.Table.from_pylist(rows, schema=schema)` for flat schemas of numbers, timestamps
    (given as integers in the schema's unit), strings and lists of strings."""
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        columns.append(_column(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _column(values: list, type: pa.DataType) -> pa.Array:
    if pa.types.is_string(type):
        return strings(values)
    valid = np.array([v is not None for v in values], dtype=bool)
    if pa.types.is_list(type) and pa.types.is_string(type.value_type):
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum([0 if v is None else len(v) for v in values], out=offsets[1:])
        flat = strings([item for v in values if v is not None for item in v])
        return pa.Array.from_buffers(type, len(values), [_validity(valid), pa.py_buffer(offsets)], children=[flat])
    data = np.array([0 if v is None else v for v in values], dtype=_numpy_dtype(type))
    return numeric(data, type, valid=valid)


def _numpy_dtype(type: pa.DataType) -> np.dtype:
    if pa.types.is_timestamp(type):
        return np.dtype(np.int64)
    if pa.types.is_floating(type):
        return np.dtype(f"f{type.bit_width // 8}")
    if pa.types.is_integer(type):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(type) else 'u'}{type.bit_width // 8}")
    raise TypeError(f"no buffer layout for {type}")


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


__all__ = ["numeric", "repeated", "strings", "table_from_rows"]
