"""The CI skip guard: under CI=true a skip whose reason is not on the allow-list fails the run,
and a run that collects nothing fails too. Real pytest runs in subprocesses, through `.ci/pytest`
(the command `.ci/run` runs the suite with)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO

ALLOWED_SKIPS = '''
import pytest
from skip_guard import NO_CHROMIUM, NO_CUDA, NO_SHARED_DATA


def test_passes():
    assert True


@pytest.mark.skipif(True, reason=NO_CUDA)
def test_needs_cuda():
    pass


def test_needs_shared_data():
    pytest.skip(NO_SHARED_DATA)


def test_needs_chromium():
    pytest.skip(NO_CHROMIUM + " (headless browser not found)")
'''

OTHER_SKIP = '''
import pytest


def test_passes():
    assert True


def test_needs_an_extra():
    pytest.skip("torch not installed")
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("a_module_that_does_not_exist")


def test_never_collected():
    assert True
'''


def ci_pytest(tmp_path: Path, source: str | None, *, ci: bool = True) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_generated.py"
    if source is not None:
        test_file.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    env.pop("CI", None)
    command = [str(REPO / ".ci" / "pytest"), "-p", "skip_guard", "-p", "no:cacheprovider", str(tmp_path)]
    if not ci:  # the same pytest, outside CI: the guard stays quiet
        command = ["python3", "-m", "pytest", "-rs", "-p", "skip_guard", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_allowed_skip_reasons_keep_ci_green(tmp_path):
    proc = ci_pytest(tmp_path, ALLOWED_SKIPS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 3 skipped" in proc.stdout
    assert "not on the CI allow-list" not in proc.stdout


def test_a_skip_for_another_reason_fails_ci(tmp_path):
    proc = ci_pytest(tmp_path, OTHER_SKIP)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout  # the tests themselves are fine…
    assert "test_needs_an_extra: Skipped: torch not installed" in proc.stdout  # …the skip is not
    assert "1 unexpected skip(s)" in proc.stdout
    # Outside CI the same skip is only reported.
    proc = ci_pytest(tmp_path, None, ci=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch not installed" in proc.stdout


def test_a_module_skipped_at_collection_fails_ci(tmp_path):
    (tmp_path / "test_fine.py").write_text("def test_passes():\n    assert True\n")  # so exit 5 is not the cause
    proc = ci_pytest(tmp_path, MODULE_SKIP)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert "test_generated.py: Skipped: could not import 'a_module_that_does_not_exist'" in proc.stdout


def test_a_run_that_collects_nothing_fails_ci(tmp_path):
    proc = ci_pytest(tmp_path, "def helper():\n    return 1\n")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "collected no tests (exit 5)" in proc.stderr


def test_the_suite_runs_under_the_guard(pytestconfig):
    """tests/conftest.py registers the guard's hooks, so `.ci/run`'s own run is guarded."""
    import skip_guard

    hooks = {
        name: [impl.function for impl in getattr(pytestconfig.hook, name).get_hookimpls()]
        for name in ("pytest_collectreport", "pytest_runtest_logreport", "pytest_sessionfinish")
    }
    for name, functions in hooks.items():
        assert functions.count(getattr(skip_guard, name)) == 1, name
