"""Test-wide settings: never reach the network, keep caches out of the user's, and locate the shared real data."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Preprocessing caches go to the datasets cache (never into a dataset's folder); the tests' own is thrown away.
if "HF_DATASETS_CACHE" not in os.environ:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf-mmfusion-tests-datasets-")
    atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from skip_reports import (  # noqa: E402, F401
    pytest_itemcollected,
    pytest_report_teststatus,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_data_dir() -> Path:
    """``shared/data`` beside the repository (CI layout), or ``HF_MMFUSION_SHARED_DATA``."""
    override = os.environ.get("HF_MMFUSION_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def require_shared_data() -> bool:
    """``HF_MMFUSION_REQUIRE_SHARED_DATA=1`` (CI with the data): a missing data file fails instead of skipping."""
    return os.environ.get("HF_MMFUSION_REQUIRE_SHARED_DATA", "") not in ("", "0")


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir() and not require_shared_data():
        pytest.skip(f"real shared data not found at {path} (set HF_MMFUSION_SHARED_DATA to its location)")
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny CLCR regressor saved once per test module: ``(folder, model, processor)``."""
    from workflow_helpers import tiny_checkpoint

    path = tmp_path_factory.mktemp("clcr")
    model, processor = tiny_checkpoint(path, "clcr")
    return path, model, processor


@pytest.fixture(scope="module")
def checkpoint(saved) -> Path:
    """The folder of ``saved`` (test modules with a model of their own define their own ``checkpoint``)."""
    return saved[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A tiny synthetic DatasetDict saved with ``save_to_disk``."""
    from workflow_helpers import tiny_dataset

    path = tmp_path_factory.mktemp("data") / "tiny"
    tiny_dataset().save_to_disk(str(path))
    return path
