"""Skip lines that say which test skipped, and a check of the skips transformers' common tests make.

transformers' ``ModelTesterMixin`` skips from inside ``self.subTest(<model class>)`` at lines of its own file.
pytest then labels the line ``SUBSKIPPED[<subtest>]`` (the first model class, whichever class actually
skipped) and names only the mixin's file and line, so a reader cannot tell which test skipped. These hooks
report such skips as plain skips and put the test's name in front of the reason.

A test module may list the tests the mixin is expected to skip, with why they do not apply to its model,
in a ``SKIPPED_BY_THE_MIXIN`` dict (test name or ``fnmatch`` pattern -> reason). Then a mixin skip that the
table does not list fails, as does a listed test that runs to the end without a skip: a common test that
stops running, or starts to, is seen instead of hidden among the skips. ``conftest.py`` imports the hooks.
"""

from __future__ import annotations

import fnmatch

import pytest

# Test id -> the SKIPPED_BY_THE_MIXIN table of its module.
_EXPECTED_MIXIN_SKIPS: dict[str, dict[str, str]] = {}
# Test ids (of modules with a table) the mixin skipped, whole or in a subtest.
_MIXIN_SKIPPED: set[str] = set()


def pytest_itemcollected(item):
    table = getattr(getattr(item, "module", None), "SKIPPED_BY_THE_MIXIN", None)
    if table is not None:
        _EXPECTED_MIXIN_SKIPS[item.nodeid] = table


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    is_subtest = getattr(report, "context", None) is not None
    if is_subtest and report.when == "call" and report.skipped and not hasattr(report, "wasxfail"):
        return "skipped", "s", "SKIPPED"
    return None


def _listed_reason(table: dict[str, str], name: str) -> str | None:
    return next((reason for pattern, reason in table.items() if fnmatch.fnmatchcase(name, pattern)), None)


def _mixin_skip(report) -> tuple[str, int, str] | None:
    """``(path, line, reason)`` of a skip made outside the test's own file (by a mixin), else ``None``."""
    if not report.skipped or not isinstance(report.longrepr, tuple) or len(report.longrepr) != 3:
        return None
    path, lineno, reason = report.longrepr
    if path.endswith(report.nodeid.split("::", 1)[0]):
        return None
    return path, lineno, reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Checked here, before any report is logged, so that pytest counts the failures (exit status, -x).
    report = yield
    table = _EXPECTED_MIXIN_SKIPS.get(item.nodeid)
    if table is None:
        return report
    test_file, name = item.nodeid.split("::", 1)[0], item.nodeid.split("::")[-1]
    skip = _mixin_skip(report)
    if skip is not None:
        _MIXIN_SKIPPED.add(item.nodeid)
        if _listed_reason(table, name) is None:
            report.outcome = "failed"
            report.longrepr = (
                f"transformers' common tests skipped {name} ({skip[2]}), which SKIPPED_BY_THE_MIXIN of {test_file} "
                "does not list: make the test apply to the model, or list it with the reason it does not"
            )
    elif call.when == "teardown" and report.passed and item.nodeid not in _MIXIN_SKIPPED:
        # Teardown comes after the test and all its subtests: only now is "never skipped" known.
        if _listed_reason(table, name) is not None:
            report.outcome = "failed"
            report.longrepr = (
                f"{name} is listed in SKIPPED_BY_THE_MIXIN of {test_file} but ran without a skip: remove its entry"
            )
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    skip = _mixin_skip(report)
    if skip is None:
        return  # not skipped, or skipped by the test itself: its own line already says which test
    path, lineno, reason = skip
    name = report.nodeid.split("::")[-1]
    listed = _listed_reason(_EXPECTED_MIXIN_SKIPS.get(report.nodeid, {}), name)
    report.longrepr = (path, lineno, f"{name}: {reason}" + (f" (here: {listed})" if listed else ""))
