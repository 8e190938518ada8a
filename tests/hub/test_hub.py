"""Model cards, one-commit pushes, offline resolution from a populated cache, and trust_remote_code."""

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import HfApi, ModelCard  # noqa: E402
from workflow_helpers import one_torch_thread, run_python, tiny_checkpoint, tiny_dataset  # noqa: E402, F401

from hf_mmfusion.hub import build_model_card, push_to_hub, stage_checkpoint  # noqa: E402

METRICS = {"mae": 0.712, "corr": 0.801, "acc2_has0": 0.85, "f1_has0": 0.849, "acc2_non0": 0.87, "f1_non0": 0.869,
           "acc5": 0.52, "acc7": 0.46}


class FakeHub:
    """Stands in for the Hub: every commit becomes a snapshot in an HF cache laid out as huggingface_hub expects."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.commits: list[tuple[str, list[str]]] = []
        self.repos: list[tuple[str, bool | None]] = []

    def create_repo(self, api, repo_id, private=None, exist_ok=False, repo_type=None, **kwargs):
        self.repos.append((repo_id, private))

    def create_commit(self, api, repo_id, operations, commit_message="", revision=None, repo_type=None, **kwargs):
        sha = f"{len(self.commits) + 1:040x}"
        repo_dir = self.cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo_dir / "snapshots" / sha
        for op in operations:
            target = snapshot / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(op.path_or_fileobj, target)
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(sha)
        self.commits.append((repo_id, sorted(op.path_in_repo for op in operations)))
        return sha


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "hub-cache")
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *a, **k: hub.create_repo(api, *a, **k))
    monkeypatch.setattr(HfApi, "create_commit", lambda api, *a, **k: hub.create_commit(api, *a, **k))

    def no_upload_folder(*args, **kwargs):
        raise AssertionError("push_to_hub must upload with one create_commit, not upload_folder")

    monkeypatch.setattr(HfApi, "upload_folder", no_upload_folder)
    return hub


def test_model_cards_carry_metrics_hyperparameters_limitations_and_citation(tmp_path):
    clcr, _ = tiny_checkpoint(tmp_path / "clcr", "clcr")
    ssu, _ = tiny_checkpoint(tmp_path / "ssu", "ssu")
    card = build_model_card(clcr, METRICS, "CMU-MOSEI", dataset_id="org/cmu-mosei", repo_id="org/clcr-mosei",
                            training_args={"learning_rate": 1e-3, "seed": 42, "max_steps": -1},
                            robustness={"clean": 0.71, "noise 1": 0.9})
    reparsed = ModelCard(str(card))
    results = {r.metric_type: r.metric_value for r in reparsed.data.eval_results}
    assert results == {k: round(v, 4) for k, v in METRICS.items()}
    assert {r.dataset_type for r in reparsed.data.eval_results} == {"org/cmu-mosei"}
    assert reparsed.data.datasets == ["org/cmu-mosei"] and reparsed.data.library_name == "transformers"
    text = card.text
    assert "| config.shared_dim | 8 |" in text and "| training.learning_rate | 0.001 |" in text
    assert "max_steps" not in text  # -1 means "not set"
    assert "5-fold cross-validation" in text and "private summaries" in text.lower()
    assert "| noise 1 | 0.9 |" in text and "org/clcr-mosei" in text and "CLCR" in text

    ssu_card = build_model_card(ssu, {"mae": 0.6, "corr": float("nan")}, "CMU-MOSI")
    assert [r.metric_type for r in ModelCard(str(ssu_card)).data.eval_results] == ["mae"]  # NaN is left out
    for flagged in ("R R^T", "straight-through", "NT-Xent", "token chain", "Sun, Jiangfeng"):
        assert flagged in ssu_card.text, flagged
    # Each card carries its model's table of departures from the paper, with the switches that undo them.
    from hf_mmfusion.hub.card import departures

    assert departures("clcr") in text and '`budget_strength="absolute"`' in text and "align_reduction" not in text
    assert departures("ssu") in ssu_card.text and '`align_reduction="sum"`' in ssu_card.text
    assert "budget_strength" not in ssu_card.text
    with pytest.raises(ValueError, match="no section"):
        departures("bert")
    with pytest.raises(ValueError, match="no model card template"):
        build_model_card(type("C", (), {"config": type("Cfg", (), {"model_type": "bert"})()})(), {}, "x")


def test_push_uploads_model_code_processor_and_card_in_one_commit(tmp_path, fake_hub):
    model, processor = tiny_checkpoint(tmp_path / "ckpt", "clcr")
    card = build_model_card(model, METRICS, "CMU-MOSEI", repo_id="org/clcr-mosei")
    push_to_hub(model, "org/clcr-mosei", processor=processor, card=card, private=True)
    assert fake_hub.repos == [("org/clcr-mosei", True)]
    assert len(fake_hub.commits) == 1
    files = set(fake_hub.commits[0][1])
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "README.md",
            "configuration_clcr.py", "modeling_clcr.py"} <= files
    # Every module the code imports with a relative import travels too.
    assert {"configuration_common.py", "modeling_common.py", "masking.py"} <= files


def test_staging_refuses_a_checkpoint_whose_code_is_missing(tmp_path, fake_hub):
    tiny_checkpoint(tmp_path / "ckpt", "ssu")
    (tmp_path / "ckpt" / "modeling_ssu.py").unlink()
    with pytest.raises(ValueError, match="modeling_ssu"):
        push_to_hub(tmp_path / "ckpt", "org/ssu-mosi")
    assert fake_hub.commits == []
    with pytest.raises(ValueError, match="not a saved checkpoint"):
        stage_checkpoint(tmp_path / "nothing-here", tmp_path / "stage")


RESOLVE = r"""
import json, sys, torch
import hf_mmfusion
from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor
expected = json.load(open(sys.argv[1]))
for repo, want in expected.items():
    base = AutoModel.from_pretrained(repo)
    model = AutoModelForSequenceClassification.from_pretrained(repo).eval()
    processor = AutoProcessor.from_pretrained(repo)
    batch = processor(text=want["text"], audio=[torch.tensor(a) for a in want["audio"]],
                      visual=[torch.tensor(v) for v in want["visual"]], return_tensors="pt")
    with torch.no_grad():
        got = model(**batch).logits.view(-1).tolist()
    assert all(abs(g - w) < 1e-4 for g, w in zip(got, want["logits"])), (repo, got, want["logits"])
    assert type(base).__name__ == want["base"], type(base).__name__
    print(repo, type(model).__name__, type(processor).__name__, [round(g, 5) for g in got])
"""

REMOTE = r"""
import json, sys, torch
from transformers import AutoModel, AutoModelForSequenceClassification
expected = json.load(open(sys.argv[1]))
for repo, want in expected.items():
    model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(repo, trust_remote_code=True)
    assert not type(model).__module__.startswith("hf_mmfusion"), type(model).__module__
    batch = {k: torch.tensor(v) for k, v in want["batch"].items()}
    with torch.no_grad():
        got = model(**batch).logits.view(-1).tolist()
    assert all(abs(g - w) < 1e-4 for g, w in zip(got, want["logits"])), (repo, got, want["logits"])
    print(repo, type(model).__module__, type(base).__name__, "ok")
"""


def test_pushed_repos_resolve_offline_from_the_cache_with_and_without_the_package(tmp_path, fake_hub):
    rows = tiny_dataset()["test"].with_format("numpy")[:3]
    expected = {}
    for repo, model_type in (("org/clcr-mosei", "clcr"), ("org/ssu-mosi", "ssu")):
        model, processor = tiny_checkpoint(tmp_path / model_type, model_type)
        push_to_hub(tmp_path / model_type, repo, card=build_model_card(model, METRICS, "x", repo_id=repo))
        batch = processor(text=list(rows["text"]), audio=list(rows["audio"]), visual=list(rows["visual"]),
                          return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits.view(-1).tolist()
        expected[repo] = {
            "text": list(rows["text"]), "audio": [a.tolist() for a in rows["audio"]],
            "visual": [v.tolist() for v in rows["visual"]], "logits": logits, "base": type(model.base_model).__name__,
            "batch": {k: v.tolist() for k, v in batch.items()},
        }
    assert [c[0] for c in fake_hub.commits] == ["org/clcr-mosei", "org/ssu-mosi"]
    spec = tmp_path / "expected.json"
    spec.write_text(json.dumps(expected))
    env = {"HF_HUB_CACHE": str(fake_hub.cache), "HF_HOME": str(tmp_path / "hf-home")}

    with_package = run_python(["-c", RESOLVE, str(spec)], env_extra=env)
    assert with_package.returncode == 0, with_package.stderr[-3000:]
    assert "org/ssu-mosi SSUForSequenceClassification MMFusionProcessor" in with_package.stdout

    # A fresh interpreter outside the repository, without the package: the code comes from the repo.
    remote = run_python(["-c", REMOTE, str(spec)], env_extra=env, with_package=False, cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert remote.stdout.count(" ok") == 2


def test_cards_follow_the_checkpoint_modalities_paths_and_splits(tmp_path):
    from hf_mmfusion.commands.push import read_card_metrics

    text_only, _ = tiny_checkpoint(tmp_path / "text", "ssu", modalities=("text",))
    text_only.config.text_config._name_or_path = str(tmp_path / "encoders" / "my-bert")
    card = build_model_card(text_only, {"mae": 0.7}, "CMU-MOSI", eval_split="validation",
                            training_args={"learning_rate": 1e-3, "text_learning_rate": 5e-5})
    text = card.text
    assert "audio" not in text.split("## Intended use")[1].split("## Training data")[0]
    assert 'inputs = processor(text=["what a great film"], return_tensors="pt")' in text
    assert str(tmp_path) not in text and "local checkpoint my-bert" in text
    assert "| training.text_learning_rate | 5e-05 |" in text
    assert "Results on the **validation** split" in text
    audio_visual, _ = tiny_checkpoint(tmp_path / "av", "clcr", modalities=("audio", "visual"))
    av_text = build_model_card(audio_visual, {}, "synthetic").text
    assert 'audio_frames = np.zeros((20, 6), dtype="float32")' in av_text
    assert "inputs = processor(audio=[audio_frames], visual=[visual_frames]" in av_text and "text=[" not in av_text
    # A metrics file with validation results only still fills the card, named as validation.
    metrics = tmp_path / "all_results.json"
    metrics.write_text('{"eval_mae": 0.5, "eval_loss": 0.3, "eval_runtime": 1.0, "train_loss": 0.2}')
    assert read_card_metrics(str(metrics)) == ({"mae": 0.5}, "validation")


def test_one_rule_picks_a_cards_metrics_for_train_reproduce_and_push():
    from hf_mmfusion.hub import card_metrics, split_metrics

    run = {"train_loss": 0.2, "eval_mae": 0.6, "eval_loss": 0.4, "eval_task_loss": 0.4, "eval_runtime": 2.0,
           "test_mae": 0.7, "test_acc7": 0.3, "test_loss": 0.5, "test_samples_per_second": 9.0, "epoch": 3.0}
    assert card_metrics(run) == ({"mae": 0.7, "acc7": 0.3}, "test")
    assert card_metrics(run, test_split="heldout") == ({"mae": 0.7, "acc7": 0.3}, "heldout")
    without_test = {k: v for k, v in run.items() if not k.startswith("test_")}
    assert card_metrics(without_test, eval_split="valid") == ({"mae": 0.6}, "valid")
    assert card_metrics({"mae": 0.9, "loss": 0.1}) == ({"mae": 0.9}, "test")
    assert split_metrics(run, "eval_") == {"mae": 0.6}


def test_json_values_drop_every_non_finite_float():
    import json

    from hf_mmfusion.utils.json_values import finite_or_none

    cleaned = finite_or_none({"a": float("nan"), "b": [1.0, float("inf"), (float("-inf"), 2)], "c": "x"})
    assert cleaned == {"a": None, "b": [1.0, None, [None, 2]], "c": "x"}
    json.dumps(cleaned, allow_nan=False)
