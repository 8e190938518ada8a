"""Skip lines that say which test skipped.

transformers' ``ModelTesterMixin`` skips from inside ``self.subTest(<model class>)`` at lines of its own file.
pytest then labels the line ``SUBSKIPPED[<subtest>]`` (the first model class, whichever class actually
skipped) and names only the mixin's file and line, so a reader cannot tell which test skipped. These hooks
report such skips as plain skips and put the test's name in front of the reason. ``conftest.py`` imports
them.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    is_subtest = getattr(report, "context", None) is not None
    if is_subtest and report.when == "call" and report.skipped and not hasattr(report, "wasxfail"):
        return "skipped", "s", "SKIPPED"
    return None


def pytest_runtest_logreport(report):
    if not report.skipped or not isinstance(report.longrepr, tuple) or len(report.longrepr) != 3:
        return
    path, lineno, reason = report.longrepr
    test_file = report.nodeid.split("::", 1)[0]
    if path.endswith(test_file):
        return  # skipped by the test itself: its own line already says which test
    name = report.nodeid.split("::")[-1]
    report.longrepr = (path, lineno, f"{name}: {reason.removeprefix('Skipped: ')}")
