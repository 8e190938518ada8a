"""What a new user meets first: install hints that work from a clone, a README that says what the tests fetch."""

import os
import re
import subprocess
import sys

import pytest
from workflow_helpers import REPO_ROOT


def test_missing_extra_hint_works_for_a_clone_and_an_install():
    from hf_mmfusion.processing.media import require

    with pytest.raises(ImportError) as info:
        require("hf_mmfusion_no_such_module", "opensmile", "audio")
    message = str(info.value)
    assert "`pip install opensmile`" in message
    # `hf_mmfusion[audio]` names a distribution on an index; a clone installs its extras from the folder.
    assert "hf_mmfusion[" not in message
    assert 'pip install -e ".[audio]"' in message


def test_readme_test_section_says_what_the_first_run_downloads():
    readme = (REPO_ROOT / "README.md").read_text()
    section = re.search(r"## Test\n(.*?)\n## ", readme, re.S).group(1)
    assert ".tf_common" in section and "HF_MMFUSION_TF_TESTS" in section
    tf_common = (REPO_ROOT / "tests" / "utils" / "transformers_common.py").read_text()
    assert '".tf_common"' in tf_common and "HF_MMFUSION_TF_TESTS" in tf_common
    assert ".tf_common/" in (REPO_ROOT / ".gitignore").read_text()


def test_mixin_skips_name_their_test(tmp_path):
    """A skip inside ``subTest`` at another file's line is reported as a skip of the named test."""
    (tmp_path / "conftest.py").write_text(
        "from skip_reports import pytest_report_teststatus, pytest_runtest_logreport  # noqa: F401\n"
    )
    (tmp_path / "mixin.py").write_text(
        "import unittest\n\n\nclass Mixin:\n"
        "    def test_needs_gpu(self):\n"
        "        for name in ('FirstModel', 'SecondModel'):\n"
        "            with self.subTest(name):\n"
        "                if name == 'SecondModel':\n"
        "                    self.skipTest('test requires accelerator')\n"
    )
    (tmp_path / "test_models.py").write_text(
        "import unittest\n\nfrom mixin import Mixin\n\n\nclass ModelTest(Mixin, unittest.TestCase):\n    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests" / "utils"), str(tmp_path)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    skip_lines = [line for line in result.stdout.splitlines() if "requires accelerator" in line]
    assert skip_lines, result.stdout[-2000:]
    assert all(line.startswith("SKIPPED") and "SUBSKIPPED" not in line for line in skip_lines), skip_lines
    assert all("test_needs_gpu: test requires accelerator" in line for line in skip_lines), skip_lines


def test_readme_explain_commands_rebuild_the_demo_test_split():
    """The README says its explain commands rebuild the demo's test split: their flags must give those rows."""
    import argparse
    import shlex

    from hf_mmfusion.commands.explain import add_explain_arguments
    from hf_mmfusion.data.datasets import DataArguments, load_any_dataset
    from hf_mmfusion.workflows.demo import DemoSettings, _test_split

    readme = (REPO_ROOT / "README.md").read_text()
    section = re.search(r"## Explaining a model\n+```bash\n(.*?)```", readme, re.S).group(1).replace("\\\n", " ")
    commands = [line.split("#")[0] for line in section.splitlines() if line.startswith("hf-mmfusion explain")]
    assert len(commands) == 2
    demo_test = _test_split(DemoSettings())
    for command in commands:
        args = add_explain_arguments(argparse.ArgumentParser()).parse_args(shlex.split(command)[2:])
        data_args = DataArguments(
            synthetic_sizes=args.synthetic_sizes, synthetic_audio_dim=args.synthetic_audio_dim,
            synthetic_visual_dim=args.synthetic_visual_dim, synthetic_seed=args.synthetic_seed,
            synthetic_modalities=list(DemoSettings.modalities), synthetic_text_words=args.synthetic_text_words,
            synthetic_audio_frames=args.synthetic_audio_frames, synthetic_visual_frames=args.synthetic_visual_frames,
        )
        rebuilt = load_any_dataset("synthetic", **data_args.synthetic_kwargs())[args.split]
        assert rebuilt["id"] == demo_test["id"] and rebuilt["text"] == demo_test["text"], command
        assert rebuilt["label"] == demo_test["label"], command
