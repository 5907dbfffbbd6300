"""Finding the input files: directories, globs, lists, filters, odd names, loops."""

from __future__ import annotations

import os
from pathlib import Path

from audiokit.discover import discover, make_file_id

EXTS = ["wav", "flac", "mp3"]


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walks_recursively_and_filters_by_extension(tmp_path):
    touch(tmp_path / "a" / "x.wav")
    touch(tmp_path / "a" / "b" / "y.FLAC")
    touch(tmp_path / "a" / "notes.txt")
    touch(tmp_path / "a" / "noext")
    found = discover([str(tmp_path / "a")], extensions=EXTS)
    assert sorted(f.relpath for f in found) == ["b/y.FLAC", "x.wav"]
    assert all(os.path.isabs(f.path) for f in found)


def test_relpaths_keep_same_names_apart(tmp_path):
    touch(tmp_path / "root" / "one" / "a.wav")
    touch(tmp_path / "root" / "two" / "a.wav")
    found = discover([str(tmp_path / "root")], extensions=EXTS)
    assert sorted(f.relpath for f in found) == ["one/a.wav", "two/a.wav"]
    assert len({f.file_id for f in found}) == 2


def test_same_relpath_under_two_inputs_gets_two_ids(tmp_path):
    touch(tmp_path / "x" / "a.wav")
    touch(tmp_path / "y" / "a.wav")
    warnings = []
    found = discover([str(tmp_path / "x"), str(tmp_path / "y")], extensions=EXTS, on_warning=warnings.append)
    assert len(found) == 2 and len({f.file_id for f in found}) == 2 and warnings


def test_file_id_is_stable_for_a_relpath(tmp_path):
    touch(tmp_path / "d" / "a.wav")
    (f,) = discover([str(tmp_path / "d")], extensions=EXTS)
    assert f.file_id == make_file_id("a.wav")


def test_globs_files_and_explicit_names(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "b.wav")
    touch(tmp_path / "c.data")  # named explicitly: taken whatever its extension
    found = discover([str(tmp_path / "*.wav"), str(tmp_path / "c.data")], extensions=EXTS)
    assert sorted(f.relpath for f in found) == ["a.wav", "b.wav", "c.data"]


def test_include_exclude(tmp_path):
    for name in ["keep/a.wav", "keep/b.mp3", "skip/c.wav"]:
        touch(tmp_path / name)
    found = discover([str(tmp_path)], extensions=EXTS, include=["keep/*"], exclude=["*.mp3"])
    assert [f.relpath for f in found] == ["keep/a.wav"]


def test_symlink_loop_and_duplicates_do_not_stop_the_walk(tmp_path):
    touch(tmp_path / "d" / "a.wav")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    os.symlink(tmp_path / "d" / "a.wav", tmp_path / "d" / "alias.wav")
    os.symlink(tmp_path / "missing.wav", tmp_path / "d" / "dangling.wav")
    found = discover([str(tmp_path / "d")], extensions=EXTS)
    assert [f.relpath for f in found] == ["a.wav"]


def test_non_utf8_and_odd_names(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9 \n\t'\"$.wav"
    with open(raw, "wb") as f:
        f.write(b"x")
    touch(tmp_path / "ü ñ 🎵.wav")
    found = discover([str(tmp_path)], extensions=EXTS)
    assert len(found) == 2
    for f in found:
        f.display_path.encode("utf-8")  # printable as UTF-8
    assert any("\\xe9" in f.display_relpath for f in found)


def test_unreadable_directory_is_skipped(tmp_path):
    """Root reads any directory, so as root the walk runs as `nobody` in a forked child."""
    import json
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="audiokit-unreadable-"))  # outside pytest's 0700 tmp tree
    try:
        base.chmod(0o755)
        touch(base / "ok" / "a.wav")
        locked = base / "locked"
        touch(locked / "b.wav")
        locked.chmod(0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop root, walk, report, exit without pytest's teardown
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                warnings = []
                found = discover([str(base)], extensions=EXTS, on_warning=warnings.append)
                os.write(write_end, json.dumps([[f.relpath for f in found], [str(w) for w in warnings]]).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        relpaths, warnings = json.loads(report)
        assert relpaths == ["ok/a.wav"]
        assert len(warnings) == 1 and "locked" in warnings[0]
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)


def test_missing_input_warns(tmp_path):
    warnings = []
    assert discover([str(tmp_path / "nope")], extensions=EXTS, on_warning=warnings.append) == []
    assert warnings
