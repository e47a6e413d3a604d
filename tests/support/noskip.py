"""In CI every test runs or the run fails: a pytest plugin (``-p tests.support.noskip``, in
pyproject's addopts) that turns every skip into a failure when ``in_ci()``, except the chaos
tests a run did not opt into (``--chaos`` / ``HELO_CHAOS=1``, see tests/conftest.py).

A test whose tool is missing (swaks, curl, Postfix, nmap, PostgreSQL, Node, systemd) skips on a
developer machine; in CI the same skip is a broken setup, and a suite that silently ran nothing
is worse than a red one. ``tests/run.sh`` installs every tool; ``tests/apt-install.sh`` fails in
CI when it cannot.

One rule reads ``$CI``, here and in the shell scripts: set and not one of ``""``, ``0``,
``false``, ``no`` (any case) means CI (GitHub Actions and GitLab set ``CI=true``, others
``CI=1``).
"""

from __future__ import annotations

import os

import pytest

NOT_CI = ("", "0", "false", "no")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in NOT_CI


def _reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])  # (path, line, "Skipped: why")
    return str(longrepr)


def _fail(report: pytest.CollectReport | pytest.TestReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI: {_reason(report.longrepr)}\n"
                       "CI runs every test: install what it needs (tests/run.sh)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and in_ci()
            and not item.get_closest_marker("chaos")):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A module that skips itself while being collected (``pytest.skip(allow_module_level=
    True)``, ``importorskip``) never reaches the per-test hook."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        _fail(report)
