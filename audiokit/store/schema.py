"""The `files` table schema and the metadata every part carries."""

from __future__ import annotations

import json

import pyarrow as pa

FILES_TABLE = "files"
META_DIR = "_audiokit"

FILES_SCHEMA = pa.schema(
    [
        pa.field("file_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("relpath", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error_kind", pa.string()),
        pa.field("error", pa.string()),
        pa.field("config_hash", pa.string()),
        # "name:hash" of each extractor whose rows for this file are current.
        pa.field("extractors", pa.list_(pa.string())),
        pa.field("processed_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def part_metadata(*, config: dict, config_hash: str, version: str, file_ids: list[str]) -> dict[bytes, bytes]:
    return {
        b"audiokit.version": version.encode(),
        b"audiokit.config": json.dumps(config, sort_keys=True).encode(),
        b"audiokit.config_hash": config_hash.encode(),
        b"audiokit.file_ids": json.dumps(sorted(file_ids)).encode(),
    }


def part_file_ids(metadata: dict[bytes, bytes] | None) -> list[str] | None:
    if not metadata or b"audiokit.file_ids" not in metadata:
        return None
    return json.loads(metadata[b"audiokit.file_ids"])
