"""Run transformers' own common model tests (``ModelTesterMixin``, ``ConfigTester``) on our models.

The mixins live in the transformers *sdist* (not the wheel). ``load_transformers_common_tests()``
downloads the sdist of the installed transformers version once (PyPI only), extracts the two test
modules into ``.tf_common/<version>/transformers_tests/`` (git-ignored) and adds stand-ins for the
three helper modules they import that the sdist omits:

- ``exporters/test_export.py``: ``ExportTesterMixin`` (torch.export tests; not part of this suite),
- ``generation/test_utils.py``: ``GenerationTesterMixin`` (our models do not generate),
- ``utils/test_configuration_utils.py``: ``config_common_kwargs`` (only read for configs without
  sub-configs; ours always declare ``text_config``).

Usage in a test module::

    common = load_transformers_common_tests()      # skips the module when the sdist is unreachable
    register_model_names("clcr", base="CLCRModel", sequence_classification="CLCRForSequenceClassification")

    class CLCRModelTest(common.ModelTesterMixin, unittest.TestCase):
        all_model_classes = (CLCRModel, CLCRForSequenceClassification)
        ...

Set ``HF_MMFUSION_TF_TESTS`` to a directory that already holds ``transformers_tests/`` to skip the download.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import transformers

_MEMBERS = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")
_STANDINS = {
    "__init__.py": "",
    "exporters/__init__.py": "",
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/__init__.py": "",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": (
        'config_common_kwargs = {"return_dict": False, "output_hidden_states": True, '
        '"output_attentions": True, "dtype": "float16", "id2label": {0: "label"}, "label2id": {"label": 0}}\n'
    ),
}


def _cache_root() -> Path:
    override = os.environ.get("HF_MMFUSION_TF_TESTS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".tf_common" / transformers.__version__


def _fetch(root: Path) -> None:
    version = transformers.__version__
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
               f"transformers=={version}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(f"pip download of the transformers {version} sdist failed: {done.stderr[-500:]}")
        staging = Path(tmp) / "transformers_tests"
        staging.mkdir()
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                rel = member.name.split("/", 1)[-1]
                if rel in _MEMBERS:
                    data = tar.extractfile(member).read()
                    (staging / Path(rel).name).write_bytes(data)
        for rel, text in _STANDINS.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        root.mkdir(parents=True, exist_ok=True)
        # Move into place in one step so an interrupted download never leaves a half package.
        os.replace(staging, root / "transformers_tests")


def load_transformers_common_tests() -> SimpleNamespace:
    """``ModelTesterMixin``, ``ConfigTester``, ``ids_tensor``, ``floats_tensor``, ``random_attention_mask``,
    ``_config_zero_init`` from the installed transformers version's own test-suite."""
    root = _cache_root()
    if not (root / "transformers_tests" / "test_modeling_common.py").is_file():
        try:
            _fetch(root)
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"transformers' common tests are unavailable (sdist not reachable): {err}", allow_module_level=True)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    modeling = importlib.import_module("transformers_tests.test_modeling_common")
    configuration = importlib.import_module("transformers_tests.test_configuration_common")
    return SimpleNamespace(
        ModelTesterMixin=modeling.ModelTesterMixin,
        ConfigTester=configuration.ConfigTester,
        ids_tensor=modeling.ids_tensor,
        floats_tensor=modeling.floats_tensor,
        random_attention_mask=modeling.random_attention_mask,
        _config_zero_init=modeling._config_zero_init,
        module=modeling,
    )


def register_model_names(model_type: str, base: str, sequence_classification: str) -> None:
    """Tell transformers' name tables which of our classes is the base model and which the head.

    ``ModelTesterMixin`` reads these tables (``MODEL_MAPPING_NAMES``,
    ``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES``) to decide what inputs and outputs a class has.
    """
    from transformers.models.auto import modeling_auto

    modeling_auto.MODEL_MAPPING_NAMES[model_type] = base
    modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES[model_type] = sequence_classification
