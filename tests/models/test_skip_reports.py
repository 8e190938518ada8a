import os
import subprocess
import sys
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "utils"

MIXIN = """import unittest


class Mixin:
    def test_needs_gpu(self):
        for name in ('FirstModel', 'SecondModel'):
            with self.subTest(name):
                if name == 'SecondModel':
                    self.skipTest('test requires accelerator')

    def test_runs(self):
        self.assertTrue(True)
"""


def _module(table: dict) -> str:
    return (
        f"import unittest\n\nfrom mixin import Mixin\n\nSKIPPED_BY_THE_MIXIN = {table!r}\n\n\n"
        "class ModelTest(Mixin, unittest.TestCase):\n    pass\n"
    )


def test_mixin_skips_are_checked_against_the_module_table(tmp_path):
    (tmp_path / "conftest.py").write_text(
        "from skip_reports import (  # noqa: F401\n"
        "    pytest_itemcollected, pytest_report_teststatus, pytest_runtest_logreport, pytest_runtest_makereport,\n"
        ")\n"
    )
    (tmp_path / "mixin.py").write_text(MIXIN)
    (tmp_path / "test_listed.py").write_text(_module({"test_needs_*": "this model runs on CPUs only"}))
    (tmp_path / "test_unlisted.py").write_text(_module({}))
    (tmp_path / "test_stale.py").write_text(_module({"test_needs_gpu": "no accelerator", "test_runs": "stale"}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(tmp_path)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-q", "-rfEs", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    # Listed: a plain skip, with the mixin's reason and the table's.
    assert "test_needs_gpu: test requires accelerator (here: this model runs on CPUs only)" in out, out[-3000:]
    failed = [line for line in out.splitlines() if line.split(" ")[0].startswith(("FAILED", "SUBFAILED", "ERROR"))]
    assert len(failed) == 2 and all("test_listed.py" not in line for line in failed), failed
    # Not listed: the skip fails and says what to do.
    assert any("test_unlisted.py::ModelTest::test_needs_gpu" in line for line in failed), failed
    assert "SKIPPED_BY_THE_MIXIN of test_unlisted.py does not list" in out
    # Listed but run to the end: the entry is stale.
    assert any("test_stale.py::ModelTest::test_runs" in line for line in failed), failed
    assert "test_runs is listed in SKIPPED_BY_THE_MIXIN of test_stale.py but ran without a skip" in out
