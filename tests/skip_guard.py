"""Under CI=true, a skip is a failure unless its reason is on the allow-list.

A test may skip only when what it needs cannot be had on a CI machine: a CUDA device,
../shared/data (never copied into the repo), or a Chromium for the browser tests. Everything else
a test needs is installed by .ci/run, so a skip for any other reason means an install went
wrong or a test found an excuse, and the run must not stay green. Skip reasons for the allowed
cases start with the phrases below (use the constants, so the phrases stay stable).
"""

from __future__ import annotations

import os
import re

import pytest

NO_CUDA = "no CUDA device"
NO_SHARED_DATA = "no ../shared/data"
NO_CHROMIUM = "no Chromium"

ALLOWED = re.compile(
    r"^(?:Skipped: )?(?:"
    + "|".join(re.escape(phrase) for phrase in (NO_CUDA, NO_SHARED_DATA, NO_CHROMIUM))
    + r")",
    re.IGNORECASE,
)

_unexpected: list[tuple[str, str]] = []


def _guard_on() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _note(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        if not ALLOWED.match(reason):
            _unexpected.append((report.nodeid, reason))


def pytest_collectreport(report):
    _note(report)  # a module-level importorskip skips at collection


def pytest_runtest_logreport(report):
    _note(report)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if not (_guard_on() and _unexpected):
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not (_guard_on() and _unexpected):
        return
    terminalreporter.section("skips not on the CI allow-list (tests/skip_guard.py)", red=True)
    for nodeid, reason in _unexpected:
        terminalreporter.line(f"{nodeid}: {reason}")
    terminalreporter.line(f"{len(_unexpected)} unexpected skip(s): the run fails under CI=true", red=True)
