"""The CI rule (tests/support/noskip.py): with ``$CI`` set every skip fails the run, whatever
form it takes, except a chaos test the run did not opt into; without it a skip is a skip. Run
on a throwaway suite in a nested pytest session."""

from __future__ import annotations

import pytest

from tests.support.noskip import in_ci

pytest_plugins = ["pytester"]

SUITE = {
    "test_inside": """
import pytest
def test_tool_missing():
    pytest.skip("swaks is not installed")
def test_runs():
    assert True
""",
    "test_marker": """
import pytest
@pytest.mark.skipif(True, reason="nmap is not installed")
def test_marked():
    pass
@pytest.mark.chaos
@pytest.mark.skip(reason="chaos run: pass --chaos")
def test_chaos():
    pass
@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False
""",
    "test_fixture": """
import pytest
@pytest.fixture
def postgres():
    pytest.skip("PostgreSQL server binaries not found")
def test_needs_postgres(postgres):
    pass
""",
    "test_module": """
import pytest
pytest.skip("Postfix is not installed", allow_module_level=True)
def test_never_collected():
    pass
""",
}


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeini("[pytest]\nmarkers =\n    chaos: long runs\n")
    pytester.makepyfile(**SUITE)
    return pytester.runpytest("-p", "tests.support.noskip", "-p", "no:cacheprovider",
                              "-p", "no:asyncio", "--continue-on-collection-errors")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_every_skip_fails_but_chaos(pytester, monkeypatch, ci):
    result = _run(pytester, monkeypatch, ci)
    # a skip in setup (skipif, a fixture) or at collection is an error, in the call a failure
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1, errors=3)
    result.stdout.fnmatch_lines(["*skipped in CI: Skipped: swaks is not installed*"])
    assert "test_chaos" not in "\n".join(line for line in result.outlines if "FAILED" in line)


@pytest.mark.parametrize("ci", [None, "false"])
def test_elsewhere_a_skip_is_a_skip(pytester, monkeypatch, ci):
    result = _run(pytester, monkeypatch, ci)
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)


def test_one_rule_for_ci(monkeypatch):
    for value, expected in (("true", True), ("1", True), (" yes ", True), ("false", False),
                            ("0", False), ("", False), ("NO", False)):
        monkeypatch.setenv("CI", value)
        assert in_ci() is expected, value
    monkeypatch.delenv("CI")
    assert in_ci() is False
