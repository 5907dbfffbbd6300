"""`audiokit.open(OUT)`: the reader, against what pyarrow reads from the same Parquet files."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

import audiokit
from audiokit.errors import ConfigError
from tests.conftest import run_json, tone, write_audio
from tests.synthetic_store import EMBEDDINGS_SCHEMA, commit_files, embedding_batch, files_row


def table_by_hand(out: Path, table: str, relpath: str):
    """What a user gets with pyarrow alone: the table filtered to one file, in frame order."""
    files = pads.dataset(out / "files").to_table().to_pylist()
    file_id = next(f["file_id"] for f in files if f["relpath"] == relpath)
    rows = pads.dataset(out / table).to_table(filter=pads.field("file_id") == file_id)
    return rows.sort_by([("channel", "ascending"), ("frame", "ascending")])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    audio = root / "audio"
    write_audio(audio / "music" / "a.flac", tone(22050, 2.0, freq=330.0), 22050)
    write_audio(audio / "music" / "stereo.wav", tone(16000, 1.5, channels=2, seed=3), 16000)
    write_audio(audio / "speech" / "b.wav", tone(16000, 3.0, freq=200.0, seed=1), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    out = root / "out"
    code, summary, err = run_json("extract", str(audio), "-o", str(out), "-x", "mfcc,spectral,segments")
    assert code == 1 and summary["failed"] == 1, err
    return out


def test_frames_equal_the_table_read_by_hand(dataset: Path):
    ds = audiokit.open(str(dataset))
    assert ds.files.num_rows == 4
    assert sorted(ds.files.to_pandas().relpath) == ["broken.wav", "music/a.flac", "music/stereo.wav", "speech/b.wav"]
    for relpath in ("music/a.flac", "music/stereo.wav", "speech/b.wav"):
        expected = table_by_hand(dataset, "mfcc", relpath)
        X = ds.frames("mfcc", relpath)
        assert X.dtype == np.float32 and X.shape == (expected.num_rows, 20)
        np.testing.assert_array_equal(X, np.stack(expected.column("mfcc").to_pylist()))
        np.testing.assert_array_equal(ds.frame_times("mfcc", relpath), expected.column("time_s").to_numpy())
        # The same file by file_id and by absolute path.
        row = ds.file(relpath)
        np.testing.assert_array_equal(ds.frames("mfcc", row["file_id"]), X)
        np.testing.assert_array_equal(ds.frames("mfcc", row["path"]), X)
        X[:] = 0  # a fresh, writable array: normalising in place is the caller's business
    spectral = ds.frames("spectral", "speech/b.wav")
    expected = table_by_hand(dataset, "spectral", "speech/b.wav")
    assert spectral.shape == (expected.num_rows, 6)
    np.testing.assert_array_equal(spectral[:, 5], expected.column("rms").to_numpy())
    np.testing.assert_array_equal(
        ds.frames("spectral", "speech/b.wav", columns=["rms"])[:, 0], expected.column("rms").to_numpy()
    )


def test_tables_segments_and_errors(dataset: Path):
    ds = audiokit.open(str(dataset))
    assert set(ds.tables) == {"mfcc", "spectral", "segments"}
    mfcc_rows = pads.dataset(dataset / "mfcc").count_rows()
    assert ds.tables["mfcc"].rows == mfcc_rows and ds.tables["mfcc"].kind == "frames"
    assert ds.tables["mfcc"].config["n_mfcc"] == 20
    segments = ds.segments("speech/b.wav")
    assert segments.column_names == ["channel", "start_s", "end_s", "label", "confidence"]
    assert segments.column("start_s")[0].as_py() == 0.0
    assert segments.column("end_s")[-1].as_py() == pytest.approx(3.0)
    assert ds.file("broken.wav")["status"] == "error"
    assert ds.frames("mfcc", "broken.wav").shape == (0, 20)  # a failed file has no rows
    with pytest.raises(ConfigError, match="not in"):
        ds.frames("mfcc", "no/such.wav")
    with pytest.raises(ConfigError, match="no table"):
        ds.frames("logmel", "speech/b.wav")
    with pytest.raises(ConfigError, match="not a frame table"):
        ds.frames("segments", "speech/b.wav")
    with pytest.raises(ConfigError, match="not an audiokit dataset"):
        audiokit.open(str(dataset / "mfcc"))


def test_channels_each_needs_a_channel(tmp_path: Path):
    audio = tmp_path / "audio"
    write_audio(audio / "st.wav", tone(22050, 1.0, channels=2), 22050)
    out = tmp_path / "out"
    code, _, err = run_json("extract", str(audio), "-o", str(out), "-x", "mfcc", "--set", "audio.channels=each")
    assert code == 0, err
    ds = audiokit.open(str(out))
    with pytest.raises(ConfigError, match="2 channels"):
        ds.frames("mfcc", "st.wav")
    expected = table_by_hand(out, "mfcc", "st.wav")
    left, right = ds.frames("mfcc", "st.wav", channel=0), ds.frames("mfcc", "st.wav", channel=1)
    assert left.shape == right.shape == (expected.num_rows // 2, 20)
    np.testing.assert_array_equal(np.concatenate([left, right]), np.stack(expected.column("mfcc").to_pylist()))
    assert not np.array_equal(left, right)  # the second channel is quieter


def test_only_row_groups_holding_the_file_are_read_and_rows_across_groups_join(tmp_path: Path, monkeypatch):
    """Many files in one part, in row groups of 100 rows: files straddle row groups."""
    import pyarrow.parquet as pq

    import audiokit.reader as reader
    import audiokit.store.parts as parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 100)
    rng = np.random.default_rng(0)
    relpaths = [f"d/{i:03d}.wav" for i in range(30)]
    frames = {r: rng.standard_normal((int(rng.integers(1, 90)), 4)).astype(np.float32) for r in relpaths}
    from tests.synthetic_store import frame_batch, frame_schema

    commit_files(
        str(tmp_path),
        [(files_row(r), {"mfcc": frame_batch(files_row(r)["file_id"], x)}) for r, x in frames.items()],
        schemas={"mfcc": frame_schema(4)},
    )
    (part,) = (tmp_path / "mfcc").glob("part-*.parquet")
    assert pq.ParquetFile(part).metadata.num_row_groups > 10
    read_groups = []
    real = reader.pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):
        if kwargs.get("columns") != ["file_id"]:
            read_groups.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(reader.pq.ParquetFile, "read_row_group", counting)
    for relpath, x in frames.items():
        read_groups.clear()
        np.testing.assert_array_equal(audiokit.open(str(tmp_path)).frames("mfcc", relpath), x)
        assert 1 <= len(read_groups) <= 1 + (x.shape[0] + 98) // 100  # the groups it spans, no more
    # One reader going through every file decodes each row group once.
    read_groups.clear()
    ds = audiokit.open(str(tmp_path))
    for relpath, x in frames.items():
        np.testing.assert_array_equal(ds.frames("mfcc", relpath), x)
    assert sorted(read_groups) == list(range(pq.ParquetFile(part).metadata.num_row_groups))


def test_snapshot_never_sees_a_later_or_uncommitted_batch(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    ds = audiokit.open(str(out))
    before = ds.tables["mfcc"].rows
    # A batch whose feature parts were renamed in but whose `files` part never was (a crash
    # between the two): copy a part's rows under a file id that `files` does not hold.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    part = next((out / "mfcc").glob("part-*.parquet"))
    rows = pq.read_table(part)
    ghost = rows.set_column(0, "file_id", pc.binary_join_element_wise(rows.column("file_id"), "x", ""))
    meta = dict(rows.schema.metadata)
    meta[b"audiokit.file_ids"] = json.dumps(sorted(set(ghost.column("file_id").to_pylist()))).encode()
    pq.write_table(ghost.replace_schema_metadata(meta), out / "mfcc" / "part-ghost000000000.parquet")
    fresh = audiokit.open(str(out))
    assert fresh.tables["mfcc"].rows == before
    assert fresh.tables["mfcc"].parts == 1
    # A run after the reader was opened adds a file: the old reader does not see it.
    audio = tmp_path / "more"
    write_audio(audio / "new.wav", tone(22050, 1.0), 22050)
    os.unlink(out / "mfcc" / "part-ghost000000000.parquet")
    code, _, err = run_json("extract", str(audio), "-o", str(out), "-x", "mfcc")
    assert code == 0, err
    assert ds.tables["mfcc"].rows == before and ds.files.num_rows == 4
    with pytest.raises(ConfigError, match="not in"):
        ds.frames("mfcc", "new.wav")
    assert audiokit.open(str(out)).frames("mfcc", "new.wav").shape[0] > 0


def test_a_compaction_in_progress_does_not_double_rows(dataset: Path, tmp_path: Path):
    """The merged part and the parts it replaces side by side, the journal naming them."""
    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    expected = audiokit.open(str(out)).frames("mfcc", "speech/b.wav")
    part = next((out / "mfcc").glob("part-*.parquet"))
    merged = "part-merged0000000000.parquet"
    shutil.copy(part, out / "mfcc" / merged)
    journal = {"table": "mfcc", "merged": merged, "parts": [part.name]}
    (out / "_audiokit" / "compacting.json").write_text(json.dumps(journal))
    ds = audiokit.open(str(out))
    np.testing.assert_array_equal(ds.frames("mfcc", "speech/b.wav"), expected)
    assert ds.tables["mfcc"].parts == 1


def test_embeddings_by_model(tmp_path: Path):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    row = files_row("talk.wav", duration_s=4.8)
    both = {"embeddings": embedding_batch(row["file_id"], np.concatenate([a, b]))}
    commit_files(str(tmp_path), [(row, both)], schemas={"embeddings": EMBEDDINGS_SCHEMA})
    np.testing.assert_array_equal(audiokit.open(str(tmp_path)).embeddings("talk.wav"), np.concatenate([a, b]))
    import pyarrow as pa

    two_models = embedding_batch(row["file_id"], np.concatenate([a, b]))
    models = pa.array(["ge2e"] * 5 + ["cnn14"] * 3)
    two_models = two_models.set_column(4, EMBEDDINGS_SCHEMA.field("model"), models)
    commit_files(str(tmp_path), [(row, {"embeddings": two_models})], schemas={"embeddings": EMBEDDINGS_SCHEMA})
    ds = audiokit.open(str(tmp_path))
    with pytest.raises(ConfigError, match="several models"):
        ds.embeddings("talk.wav")
    np.testing.assert_array_equal(ds.embeddings("talk.wav", model="cnn14"), b)
    assert ds.tables["embeddings"].rows == 8


# -- the torch Dataset ---------------------------------------------------------------------------


def test_torch_items_per_file_and_collate_pads(dataset: Path):
    import torch

    ds = audiokit.open(str(dataset))
    data = ds.torch("mfcc")
    assert isinstance(data, torch.utils.data.Dataset)
    assert sorted(item["relpath"] for item in data) == ["music/a.flac", "music/stereo.wav", "speech/b.wav"]
    for item in data:
        assert item["row"]["status"] == "ok" and item["length"] == item["features"].shape[0]
        np.testing.assert_array_equal(item["features"].numpy(), ds.frames("mfcc", item["relpath"]))
    batch = data.collate([data[0], data[1], data[2]])
    lengths = [data[i]["length"] for i in range(3)]
    assert batch["features"].shape == (3, max(lengths), 20) and batch["features"].dtype == torch.float32
    assert batch["lengths"].tolist() == lengths
    for i, n in enumerate(lengths):
        assert torch.equal(batch["features"][i, :n], data[i]["features"])
        assert not batch["features"][i, n:].any()


def test_torch_windows_and_file_labels(dataset: Path):
    ds = audiokit.open(str(dataset))
    data = ds.torch(
        "mfcc", window_frames=32, hop_frames=16, labels={"music/a.flac": 1, "music/stereo.wav": 1, "speech/b.wav": 0}
    )
    expected = 0
    for relpath in ("music/a.flac", "music/stereo.wav", "speech/b.wav"):
        n = ds.frames("mfcc", relpath).shape[0]
        expected += (n - 32) // 16 + 1
    assert len(data) == expected
    for item in data:
        X = ds.frames("mfcc", item["relpath"])
        start = item["start_frame"]
        assert item["features"].shape == (32, 20) and item["length"] == 32
        np.testing.assert_array_equal(item["features"].numpy(), X[start : start + 32])
        assert item["labels"] == (0 if item["relpath"].startswith("speech") else 1)
    batch = data.collate([data[0], data[len(data) - 1]])
    assert batch["labels"].tolist() == [1, 0]
    # A window longer than a file: one zero-padded window whose length says what is real.
    long = ds.torch("mfcc", window_frames=1000, labels="format")
    assert len(long) == 3
    item = long[0]
    assert (
        item["features"].shape == (1000, 20) and item["length"] < 1000 and not item["features"][item["length"] :].any()
    )
    assert item["labels"] == item["row"]["format"]


def test_torch_frame_labels_from_segments(dataset: Path):
    ds = audiokit.open(str(dataset))
    data = ds.torch("mfcc", labels="segments")
    for item in data:
        segments = ds.segments(item["relpath"]).to_pylist()
        times = ds.frame_times("mfcc", item["relpath"])
        labels = item["labels"].numpy()
        assert labels.shape == (item["length"],)
        for t, label in zip(times, labels):
            covering = [
                s["label"]
                for s in segments
                if s["start_s"] <= t < s["end_s"] or t == s["end_s"] == segments[-1]["end_s"]
            ]
            assert data.label_names[label] == covering[0]


def test_dataloader_with_two_workers_gives_the_same_batches(dataset: Path):
    import torch

    data = audiokit.open(str(dataset)).torch("mfcc", window_frames=24, hop_frames=24, labels="segments")

    def batches(workers: int):
        loader = torch.utils.data.DataLoader(data, batch_size=5, num_workers=workers, collate_fn=data.collate)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == -(-len(data) // 5)
    for a, b in zip(serial, parallel):
        assert torch.equal(a["features"], b["features"]) and torch.equal(a["labels"], b["labels"])
        assert a["relpath"] == b["relpath"] and torch.equal(a["lengths"], b["lengths"])


def test_the_reader_works_without_torch(dataset: Path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import audiokit\n"
        f"ds = audiokit.open({str(dataset)!r})\n"
        "print(ds.frames('mfcc', 'speech/b.wav').shape)\n"
        "try:\n    ds.torch('mfcc')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    shape, error = proc.stdout.splitlines()
    assert shape.startswith("(") and error.startswith("ConfigError") and "audiokit[torch]" in error


def test_the_readme_reading_snippets_run(tmp_path: Path):
    """The README's "Reading the tables" code, run as written on the README's example dataset."""
    import subprocess
    import sys

    from tests.conftest import REPO, run_cli

    readme = (REPO / "README.md").read_text()
    section = readme.split("### Reading the tables", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2 and "audiokit.open" in blocks[0] and "ds.torch" in blocks[0]
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_example.py"), "example"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    proc = run_cli("extract", "example", "-o", "example-out", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    expected = table_by_hand(tmp_path / "example-out", "mfcc", "music/chord.wav")
    np.testing.assert_array_equal(namespace["X"], np.stack(expected.column("mfcc").to_pylist()))
    assert namespace["S"].shape == (expected.num_rows, 2)
    assert namespace["rows"] == pads.dataset(tmp_path / "example-out" / "mfcc").count_rows()
    batch = namespace["batch"]
    assert tuple(batch["features"].shape) == (8, 64, 20) and batch["lengths"].tolist() == [64] * 8
    assert set(batch["labels"]) <= set(namespace["files"].format)
    assert namespace["spectral"].height == pads.dataset(tmp_path / "example-out" / "spectral").count_rows()
