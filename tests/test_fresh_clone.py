"""A clone without the shared real data: tests that need it skip with a reason, nothing errors."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_suite_without_shared_data_skips_with_a_reason(tmp_path):
    env = {**os.environ, "HF_MMFUSION_SHARED_DATA": str(tmp_path / "absent"), "OMP_NUM_THREADS": "1"}
    env.pop("HF_MMFUSION_REQUIRE_SHARED_DATA", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/processing/test_dependency_parser.py", "-o", "addopts=", "-q", "-rs",
         "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " error" not in result.stdout.splitlines()[-1]
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("HF_MMFUSION_SHARED_DATA" in line for line in skips)
    # The tests that do not need the treebank still ran.
    assert "passed" in result.stdout.splitlines()[-1]


def test_required_shared_data_is_switched_by_the_environment(monkeypatch):
    from conftest import require_shared_data

    monkeypatch.delenv("HF_MMFUSION_REQUIRE_SHARED_DATA", raising=False)
    assert not require_shared_data()
    monkeypatch.setenv("HF_MMFUSION_REQUIRE_SHARED_DATA", "1")
    assert require_shared_data()
    monkeypatch.setenv("HF_MMFUSION_REQUIRE_SHARED_DATA", "0")
    assert not require_shared_data()
