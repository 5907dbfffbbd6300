"""Re-runs over the same output: skip what is unchanged, replace what changed, never duplicate."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow.compute as pc
import pyarrow.dataset as ds
from conftest import REPO, STAGE_ON_DISK, run_cli, run_json, tone, write_audio


def rows(out, name):
    return ds.dataset(str(out / name), format="parquet").to_table()


def key_counts(out, name):
    t = rows(out, name)
    keys = list(zip(t["file_id"].to_pylist(), t["channel"].to_pylist(), t["frame"].to_pylist()))
    return len(keys), len(set(keys))


def test_rerun_skips_everything_and_changes_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    code, first, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 0 and first["processed"] == 4
    before = {name: rows(out, name) for name in ("files", "mfcc", "spectral")}
    code, second, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 0 and second["processed"] == 0 and second["skipped"] == 4
    for name, table in before.items():
        assert rows(out, name).equals(table), name


def test_changed_and_added_files_are_exactly_what_runs(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out))
    old = {r["relpath"]: r for r in rows(out, "files").to_pylist()}
    write_audio(corpus / "a" / "tone.flac", tone(16000, 3.0, freq=500.0), 16000)  # changed: longer
    os.utime(corpus / "a" / "tone.flac", ns=(time.time_ns(), time.time_ns() + 10**9))
    write_audio(corpus / "c" / "new.wav", tone(8000, 0.5), 8000)  # added
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 0 and summary["processed"] == 2 and summary["skipped"] == 3
    files = {r["relpath"]: r for r in rows(out, "files").to_pylist()}
    assert len(files) == 5 and len(rows(out, "files")) == 5
    assert abs(files["a/tone.flac"]["duration_s"] - 3.0) < 0.01
    assert files["a/tone.wav"]["processed_at"] == old["a/tone.wav"]["processed_at"]
    for name in ("mfcc", "spectral"):
        total, unique = key_counts(out, name)
        assert total == unique, f"duplicate (file_id, channel, frame) in {name}"
    mfcc = rows(out, "mfcc")
    changed = mfcc.filter(pc.equal(mfcc["file_id"], files["a/tone.flac"]["file_id"]))
    assert len(changed) == 1 + 3 * 22050 // 512


def test_adding_an_extractor_computes_only_that_one(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc")
    mfcc_before = rows(out, "mfcc")
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc,logmel")
    assert code == 0 and summary["processed"] == 4
    assert summary["tables"] == {"logmel": len(mfcc_before)}
    assert rows(out, "mfcc").equals(mfcc_before)
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "-x", "mfcc,logmel")
    assert summary["processed"] == 0


def test_changing_a_parameter_recomputes_that_extractor(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out))
    spectral_before = rows(out, "spectral")
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "--set", "mfcc.n_mfcc=13")
    assert summary["processed"] == 4 and set(summary["tables"]) == {"mfcc"}
    assert rows(out, "mfcc").schema.field("mfcc").type.list_size == 13
    assert rows(out, "spectral").equals(spectral_before)
    total, unique = key_counts(out, "mfcc")
    assert total == unique


def test_force_redoes_all_and_prune_drops_vanished_files(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out))
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "--force")
    assert summary["processed"] == 4
    assert key_counts(out, "mfcc")[0] == key_counts(out, "mfcc")[1]
    (corpus / "b" / "tone.mp3").unlink()
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out))
    assert summary["processed"] == 0 and len(rows(out, "files")) == 4  # kept without --prune
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "--prune")
    assert summary["pruned"] == 1
    files = rows(out, "files")
    assert len(files) == 3
    assert set(rows(out, "mfcc")["file_id"].unique().to_pylist()) == set(files["file_id"].to_pylist())


def test_failed_files_are_retried_unless_asked_not_to(corpus, tmp_path):
    out = tmp_path / "out"
    (corpus / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    code, _, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 1
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out), "--no-retry-failed")
    assert code == 0 and summary["processed"] == 0
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 1 and summary["processed"] == 1 and summary["failed"] == 1
    write_audio(corpus / "bad.wav", tone(8000, 0.5), 8000)  # fixed by the user
    code, summary, _ = run_json("extract", str(corpus), "-o", str(out))
    assert code == 0 and summary["processed"] == 1
    assert len(rows(out, "files")) == 5


def test_a_second_run_on_a_held_output_exits_3(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out))
    before = sorted(p.name for p in (out / "mfcc").iterdir())
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,json,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, json.dumps({'pid': os.getpid(), 'host': 'h', 'started': 's'}).encode());"
         "print('held', flush=True); time.sleep(60)", str(out / "_audiokit" / "lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("extract", str(corpus), "-o", str(out), "--force")
        assert proc.returncode == 3
        assert f"pid {holder.pid}" in proc.stderr
        assert sorted(p.name for p in (out / "mfcc").iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its flock went with it, the next run proceeds.
    assert run_cli("extract", str(corpus), "-o", str(out)).returncode == 0


def test_prune_refuses_when_an_input_is_missing(corpus, tmp_path):
    out = tmp_path / "out"
    run_json("extract", str(corpus), "-o", str(out))
    proc = run_cli("extract", str(tmp_path / "unmounted"), "-o", str(out), "--prune")
    assert proc.returncode == 2 and "INPUT not found" in proc.stderr
    (tmp_path / "mountpoint").mkdir()  # an unmounted disk leaves an empty mount point
    proc = run_cli("extract", str(tmp_path / "mountpoint"), "-o", str(out), "--prune")
    assert proc.returncode == 2 and "--prune refused" in proc.stderr
    assert len(rows(out, "files")) == 4


# --------------------------------------------------------------------------------------------
# Compaction: a nightly run adds a small part per table; many of them are merged on open.


def nightly_dataset(tmp_path, nights: int):
    """The dataset a cron job leaves after `nights` runs that each found one new file."""
    import audiokit

    src, out = tmp_path / "in", tmp_path / "out"
    for night in range(nights):
        write_audio(src / f"n{night:02d}.wav", tone(8000, 0.4, freq=200.0 + 10 * night, seed=night), 8000)
        summary = audiokit.extract([str(src)], str(out), extractors=["mfcc", "spectral"], workers=1)
        assert summary.processed == 1
    return src, out


def part_counts(out) -> dict[str, int]:
    return {name: len(list((out / name).glob("part-*.parquet"))) for name in ("files", "mfcc", "spectral")}


def row_sets(out) -> dict[str, set]:
    result = {}
    for name in ("files", "mfcc", "spectral"):
        table = rows(out, name)
        if name == "files":
            table = table.drop(["processed_at"])
        result[name] = {tuple(map(repr, row.values())) for row in table.to_pylist()}
        assert len(result[name]) == table.num_rows, name  # no row twice
    return result


def test_many_small_parts_are_merged_and_every_row_stays(tmp_path):
    from audiokit.store.dataset import COMPACT_AT_PARTS

    src, out = nightly_dataset(tmp_path, COMPACT_AT_PARTS)
    assert part_counts(out) == {"files": COMPACT_AT_PARTS, "mfcc": COMPACT_AT_PARTS, "spectral": COMPACT_AT_PARTS}
    before = row_sets(out)
    write_audio(src / "new.wav", tone(8000, 0.4, freq=900.0), 8000)
    code, summary, err = run_json("extract", str(src), "-o", str(out), "-x", "mfcc,spectral", "--workers", "1")
    assert code == 0 and summary["processed"] == 1 and summary["skipped"] == COMPACT_AT_PARTS, err
    assert part_counts(out) == {"files": 2, "mfcc": 2, "spectral": 2}  # the merged part + tonight's
    after = row_sets(out)
    for name in before:
        assert before[name] < after[name], name  # every old row still there, once
    assert key_counts(out, "mfcc")[0] == key_counts(out, "mfcc")[1]
    code, summary, err = run_json("extract", str(src), "-o", str(out), "-x", "mfcc,spectral", "--workers", "1")
    assert code == 0 and summary["processed"] == 0, err
    # A changed file is replaced inside the merged part, as in any other part.
    write_audio(src / "n03.wav", tone(8000, 0.7, freq=321.0), 8000)
    code, summary, err = run_json("extract", str(src), "-o", str(out), "-x", "mfcc,spectral", "--workers", "1")
    assert code == 0 and summary["processed"] == 1, err
    assert key_counts(out, "mfcc")[0] == key_counts(out, "mfcc")[1]
    assert rows(out, "files").num_rows == COMPACT_AT_PARTS + 1


def test_a_merge_cut_short_by_a_crash_is_finished_by_the_next_run(tmp_path):
    """The worst moment to die: the merged part is in place and the parts it replaces are
    still there. The journal written before the merge lets the next run delete them."""
    import json
    import shutil

    from audiokit.store.dataset import COMPACT_AT_PARTS, COMPACT_JOURNAL

    src, out = nightly_dataset(tmp_path, COMPACT_AT_PARTS)
    expected = row_sets(out)
    backup = tmp_path / "backup"
    shutil.copytree(out, backup)
    code, summary, err = run_json("extract", str(src), "-o", str(out), "-x", "mfcc,spectral", "--workers", "1")
    assert code == 0 and summary["processed"] == 0, err
    merged = {name: next((out / name).glob("part-*.parquet")).name for name in ("files", "mfcc", "spectral")}
    # Rebuild the state a SIGKILL right after the mfcc merge's rename leaves behind.
    old_parts = sorted(p.name for p in (backup / "mfcc").glob("part-*.parquet"))
    for name in old_parts:
        shutil.copy(backup / "mfcc" / name, out / "mfcc" / name)
    journal = {"table": "mfcc", "merged": merged["mfcc"], "parts": old_parts}
    (out / "_audiokit" / COMPACT_JOURNAL).write_text(json.dumps(journal))
    assert rows(out, "mfcc").num_rows == 2 * len(expected["mfcc"])  # every row twice, for now
    code, summary, err = run_json("extract", str(src), "-o", str(out), "-x", "mfcc,spectral", "--workers", "1")
    assert code == 0 and summary["processed"] == 0, err
    assert row_sets(out) == expected
    assert part_counts(out) == {"files": 1, "mfcc": 1, "spectral": 1}
    assert not (out / "_audiokit" / COMPACT_JOURNAL).exists()


def merge_state(out) -> tuple[str, str] | None:
    """(table, "writing" | "renamed") while a merge's journal is there, else None."""
    import json

    from audiokit.store.dataset import COMPACT_JOURNAL

    try:
        journal = json.loads((out / "_audiokit" / COMPACT_JOURNAL).read_text())
    except (FileNotFoundError, ValueError):  # none, or caught while being written
        return None
    renamed = (out / journal["table"] / journal["merged"]).exists()
    return journal["table"], "renamed" if renamed else "writing"


def test_killed_while_merging_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL at chosen moments of the merge (journal written and the merged part still being
    written; merged part renamed with the old parts still there), checked to have landed there."""
    import shutil
    import signal

    from audiokit.store.dataset import COMPACT_AT_PARTS

    src, out = nightly_dataset(tmp_path, COMPACT_AT_PARTS)
    expected = row_sets(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    moments = [("files", "writing"), ("mfcc", "writing"), ("spectral", "writing"), ("files", "renamed"),
               ("mfcc", "renamed"), ("spectral", "renamed")]
    missed = 0
    for attempt, moment in enumerate(moments):
        target = tmp_path / f"kill{attempt}"
        shutil.copytree(out, target)
        proc = subprocess.Popen([sys.executable, "-m", "audiokit", "extract", str(src), "-o", str(target),
                                 "-x", "mfcc,spectral", "--workers", "1", "--quiet"], env=env)
        landed = False
        while proc.poll() is None:
            if merge_state(target) == moment:
                proc.send_signal(signal.SIGKILL)
                landed = True
                break
            time.sleep(0.0005)
        proc.wait()
        if not landed:
            assert moment[1] == "renamed", f"{moment}: the run ended without being seen there"
        if not landed or merge_state(target) is None:
            # Deleting the old parts takes milliseconds: a poll, or on a loaded machine the kill
            # itself, can come after the merge. Counted below: most kills must land mid-merge.
            missed += 1
        code, summary, err = run_json("extract", str(src), "-o", str(target), "-x", "mfcc,spectral", "--workers", "1")
        assert code == 0 and summary["processed"] == 0, (moment, err)
        assert row_sets(target) == expected, moment
        assert merge_state(target) is None
    assert missed <= 2, f"{missed} of 6 kills came after the merge"


def test_rows_staged_in_memory_or_on_disk_make_the_same_dataset(corpus, tmp_path):
    """Small files' rows travel with their outcome, large ones' through a staged file: a run
    that stages everything on disk writes the same rows, also after a re-run that adds a file."""
    import numpy as np
    import pyarrow as pa

    from audiokit.store.parts import StageWriter, iter_staged

    # The writer itself: in memory up to its limit, then every row on disk, in order.
    schema = pa.schema([("x", pa.int64())])
    batches = [pa.record_batch([pa.array(np.arange(i * 100, (i + 1) * 100))], schema=schema) for i in range(4)]
    small = StageWriter(str(tmp_path / "small.arrow"), schema, inline_bytes=10_000)
    small.write(batches[0])
    held = small.commit()
    assert isinstance(held, pa.Table) and held.num_rows == 100 and not (tmp_path / "small.arrow").exists()
    large = StageWriter(str(tmp_path / "large.arrow"), schema, inline_bytes=1_000)
    for batch in batches:
        large.write(batch)
    path = large.commit()
    assert path == str(tmp_path / "large.arrow")
    assert pa.Table.from_batches(list(iter_staged(path))).column("x").to_pylist() == list(range(400))

    outs = {}
    for name, env in (("memory", {}), ("disk", STAGE_ON_DISK)):
        out = tmp_path / name
        assert run_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", env=env).returncode == 0
        write_audio(corpus / "a" / "added.wav", tone(22050, 1.0, seed=9), 22050)
        assert run_cli("extract", str(corpus), "-o", str(out), "-x", "mfcc,spectral", env=env).returncode == 0
        (corpus / "a" / "added.wav").unlink()
        outs[name] = out
    for table in ("mfcc", "spectral"):
        memory, disk = (rows(outs[n], table).sort_by([("file_id", "ascending"), ("channel", "ascending"), ("frame", "ascending")])
                        for n in ("memory", "disk"))
        assert memory.num_rows > 0 and memory.equals(disk), table
