"""``hf-mmfusion reproduce``: seeds, validation-only selection, mean +- std tables, best-model card, resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import statistics

import pytest
import torch
import yaml
from datasets import DatasetDict
from safetensors.torch import load_file
from workflow_helpers import one_torch_thread, tiny_dataset, tiny_train_argv  # noqa: F401  (autouse fixture)

from hf_mmfusion.commands.reproduce import build_parser as reproduce_parser
from hf_mmfusion.workflows import reproduce
from hf_mmfusion.workflows.reproduce import RunSpec, best_seed, mean_std, run_seeds, summary_markdown

METRICS = ["mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7"]


def spec_from_flags(name, output_dir, *extra, sizes=(16, 8, 8)):
    argv = tiny_train_argv(name, output_dir, *extra, sizes=sizes)
    model_args, data_args, training_args, _ = reproduce_parser().parse_args_into_dataclasses(args=argv)
    return RunSpec(name, model_args, data_args, training_args)


def results_of(directory, name, seeds):
    return [json.loads((directory / name / f"seed-{s}" / "result.json").read_text()) for s in seeds]


def card_metadata(path):
    text = path.read_text()
    return yaml.safe_load(text.split("---")[1])


def test_mean_std_and_cells():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert mean_std([0.7])[0] == 0.7 and math.isnan(mean_std([0.7])[1])
    summary = {"m": {"seeds": [1, 2], "validation": {"mae": {"mean": 0.5, "std": 0.25, "values": [0.25, 0.75]}}}}
    assert summary_markdown(summary).splitlines()[2] == "| m | validation | 2 | 0.5000 ± 0.2500 |"


def test_best_seed_is_chosen_on_validation_not_test():
    runs = [
        {"seed": 1, "selection_metric": "mae", "greater_is_better": False,
         "validation": {"mae": 0.60}, "test": {"mae": 0.90}},
        {"seed": 2, "selection_metric": "mae", "greater_is_better": False,
         "validation": {"mae": 0.70}, "test": {"mae": 0.10}},
    ]
    assert best_seed(runs)["seed"] == 1
    for run in runs:
        run.update(selection_metric="corr", greater_is_better=True)
        run["validation"]["corr"] = 0.2 * run["seed"]
    assert best_seed(runs)["seed"] == 2


def test_cli_table_shape_mean_std_baseline_and_best_model_card(tmp_path, capsys):
    from hf_mmfusion.commands import main

    out = tmp_path / "repro"
    seeds = [3, 4]
    argv = tiny_train_argv("clcr", out, "--num_train_epochs", "2", "--baseline", "--seeds", *map(str, seeds))
    assert main(["reproduce", *argv]) == 0
    printed = capsys.readouterr().out
    lines = (out / "results.md").read_text().splitlines()
    assert lines[0] == "| model | split | seeds | " + " | ".join(METRICS) + " |"
    assert [line.split(" | ")[:3] for line in lines[2:]] == [
        ["| clcr", "validation", "2"], ["| clcr", "test", "2"], ["| baseline", "validation", "2"], ["| baseline", "test", "2"],
    ]
    assert lines[2] in printed
    summary = json.loads((out / "results.json").read_text())["summary"]
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    with (out / "per_seed.csv").open() as handle:
        per_seed = list(csv.DictReader(handle))
    assert len(table) == 2 * 2 * len(METRICS) and len(per_seed) == 2 * len(seeds) * 2 * len(METRICS)
    for name in ("clcr", "baseline"):
        runs = results_of(out, name, seeds)
        assert [r["seed"] for r in runs] == seeds and all(r["model"] == name for r in runs)
        for split in ("validation", "test"):
            for metric in ("mae", "acc2_has0"):
                values = [r[split][metric] for r in runs]
                stats = summary[name][split][metric]
                assert stats["values"] == values
                assert stats["mean"] == pytest.approx(statistics.mean(values))
                assert stats["std"] == pytest.approx(statistics.stdev(values))
                row = next(t for t in table if (t["model"], t["split"], t["metric"]) == (name, split, metric))
                assert float(row["mean"]) == pytest.approx(stats["mean"]) and row["n"] == "2"
        assert not list((out / name).glob("seed-*/checkpoint-*"))  # only the final models stay
        best = out / name / "best-model"
        chosen = json.loads((best / "selection.json").read_text())["seed"]
        assert chosen == min(runs, key=lambda r: r["validation"]["mae"])["seed"]
        saved, source = load_file(str(best / "model.safetensors")), load_file(str(out / name / f"seed-{chosen}" / "model.safetensors"))
        assert all(torch.equal(saved[k], source[k]) for k in source)
        index = card_metadata(best / "README.md")["model-index"][0]["results"][0]
        values = {m["type"]: m["value"] for m in index["metrics"]}
        assert index["dataset"]["split"] == "test"
        assert values["mae"] == pytest.approx(round(summary[name]["test"]["mae"]["mean"], 4))
        assert values["mae_std"] == pytest.approx(round(summary[name]["test"]["mae"]["std"], 4))
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out / "baseline" / "best-model").model_type == "bert"
    assert json.loads((out / "clcr" / "seed-3" / "config.json").read_text())["modalities"] == ["text", "audio", "visual"]
    assert json.loads((out / "baseline" / "seed-3" / "result.json").read_text())["recipe"]["model"]["modalities"] == ["text"]


def test_selection_never_sees_the_test_split(tmp_path):
    """Two datasets that differ only in their test labels give the same checkpoints, seeds and validation."""
    base = tiny_dataset(sizes=(16, 8, 8))
    base.save_to_disk(str(tmp_path / "data-a"))
    flipped = DatasetDict({**base, "test": base["test"].map(lambda row: {"label": 2.5 - row["label"]})})
    flipped.save_to_disk(str(tmp_path / "data-b"))
    outcomes = {}
    for tag in ("a", "b"):
        spec = spec_from_flags("clcr", tmp_path / "unused", "--num_train_epochs", "3")
        spec = dataclasses.replace(spec, data_args=dataclasses.replace(spec.data_args, dataset=str(tmp_path / f"data-{tag}")))
        outcomes[tag] = run_seeds([spec], [5, 6], tmp_path / f"out-{tag}", progress=False)["per_seed"]["clcr"]
    for run_a, run_b in zip(outcomes["a"], outcomes["b"]):
        assert run_a["best_checkpoint_step"] == run_b["best_checkpoint_step"] is not None
        assert run_a["validation"] == pytest.approx(run_b["validation"], rel=1e-6)
        assert run_a["test"]["mae"] != pytest.approx(run_b["test"]["mae"], rel=1e-3)
    selected = [json.loads((tmp_path / f"out-{t}" / "clcr" / "best-model" / "selection.json").read_text()) for t in "ab"]
    assert selected[0]["seed"] == selected[1]["seed"]


def test_interrupted_run_continues_with_unfinished_seeds(tmp_path, monkeypatch):
    out = tmp_path / "repro"
    spec = spec_from_flags("ssu", tmp_path / "unused", "--num_train_epochs", "1", sizes=(8, 4, 4))
    real, calls = reproduce.run_training, []

    def interrupted(model_args, data_args, training_args, **kwargs):
        calls.append(training_args.seed)
        if training_args.seed == 2:
            (out / "ssu" / "seed-2" / "checkpoint-1").mkdir(parents=True)
            raise KeyboardInterrupt
        return real(model_args, data_args, training_args, **kwargs)

    monkeypatch.setattr(reproduce, "run_training", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_seeds([spec], [1, 2, 3], out, progress=False)
    assert calls == [1, 2]
    first = out / "ssu" / "seed-1" / "result.json"
    assert first.is_file() and not (out / "ssu" / "seed-2" / "result.json").exists()
    stamp = first.stat().st_mtime_ns
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["ssu"]["seeds"] == [1]  # the table already holds the finished seed

    calls.clear()
    monkeypatch.setattr(reproduce, "run_training", lambda *a, **k: (calls.append(a[2].seed), real(*a, **k))[1])
    outcome = run_seeds([spec], [1, 2, 3], out, progress=False)
    assert calls == [2, 3] and first.stat().st_mtime_ns == stamp
    assert not (out / "ssu" / "seed-2" / "checkpoint-1").exists()
    assert [r["seed"] for r in outcome["per_seed"]["ssu"]] == [1, 2, 3]
    assert outcome["summary"]["ssu"]["validation"]["mae"]["values"] == [
        r["validation"]["mae"] for r in results_of(out, "ssu", [1, 2, 3])
    ]
    calls.clear()
    run_seeds([spec], [1, 2, 3], out, progress=False)
    assert calls == []

    changed = dataclasses.replace(spec, training_args=dataclasses.replace(spec.training_args, learning_rate=3e-4))
    with pytest.raises(ValueError, match=r"different recipe \(training.learning_rate: 0.001 -> 0.0003\)"):
        run_seeds([changed], [1, 2, 3], out, progress=False)


def test_recipe_fingerprint_survives_upgrades_and_output_flags(tmp_path):
    """A finished seed stays finished when only reporting flags change, when a newer version records a
    field the old record lacks (at its default), or when a real dataset's run carries synthetic knobs;
    a real change of recipe is still caught, also in a field the old record lacks."""
    spec = spec_from_flags("clcr", tmp_path)
    old = reproduce.recipe(spec)
    assert "overwrite_output_dir" not in old["data"] and "save_total_limit" not in old["training"]
    reporting = dataclasses.replace(
        spec, training_args=dataclasses.replace(spec.training_args, save_total_limit=7, disable_tqdm=True)
    )
    assert reproduce._recipe_changes(old, reproduce.recipe(reporting)) == []

    older = json.loads(json.dumps(old))
    del older["model"]["text_learning_rate"], older["training"]["warmup_steps"]
    assert reproduce._recipe_changes(older, old) == []
    new_value = json.loads(json.dumps(old))
    new_value["model"]["text_learning_rate"] = 1e-4
    assert reproduce._recipe_changes(older, new_value) == ["model.text_learning_rate: None -> 0.0001"]

    other_data = dataclasses.replace(spec, data_args=dataclasses.replace(spec.data_args, synthetic_audio_dim=99))
    assert reproduce._recipe_changes(old, reproduce.recipe(other_data)) == [f"data.synthetic_audio_dim: {spec.data_args.synthetic_audio_dim} -> 99"]
    real = dataclasses.replace(spec, data_args=dataclasses.replace(spec.data_args, dataset=str(tmp_path / "data")))
    on_real = reproduce.recipe(real)
    assert not any(k.startswith("synthetic_") for k in on_real["data"])
    longer = dataclasses.replace(real, data_args=dataclasses.replace(real.data_args, synthetic_audio_dim=99))
    assert reproduce._recipe_changes(on_real, reproduce.recipe(longer)) == []
    cut = dataclasses.replace(real, data_args=dataclasses.replace(real.data_args, max_text_length=17))
    assert reproduce._recipe_changes(on_real, reproduce.recipe(cut)) == ["data.max_text_length: 64 -> 17"]


def test_bad_arguments_raise(tmp_path):
    spec = spec_from_flags("clcr", tmp_path)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        run_seeds([spec], [1, 1], tmp_path)
    with pytest.raises(ValueError, match="model names must be unique"):
        run_seeds([spec, spec], [1], tmp_path)
    with pytest.raises(ValueError, match="at least one integer seed"):
        run_seeds([spec], [], tmp_path)
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_baseline_model

    with pytest.raises(ValueError, match="text only"):
        build_baseline_model(ModelArguments(model_type="baseline"), ["text", "audio"], 1)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_users_result_files_are_never_overwritten(tmp_path, capsys, monkeypatch):
    from hf_mmfusion.commands import main

    calls = []
    real = reproduce.run_training
    monkeypatch.setattr(reproduce, "run_training", lambda *a, **k: (calls.append(a[2].seed), real(*a, **k))[1])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.md").write_text("| my | table |\n")
    (out / "results.csv").write_text("model,mae\nmine,0.5\n")
    argv = tiny_train_argv("clcr", out, "--max_steps", "1", "--seeds", "41", sizes=(8, 4, 4))
    assert main(["reproduce", *argv]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "results.csv, results.md" in line and "did not write" in line
    assert (out / "results.md").read_text() == "| my | table |\n"
    assert (out / "results.csv").read_text() == "model,mae\nmine,0.5\n"
    assert calls == []


def test_a_second_run_never_clears_the_seed_a_running_one_trains(tmp_path, capsys):
    from hf_mmfusion.commands import main
    from hf_mmfusion.utils.outputs import claim_output_dir, run_lock
    from hf_mmfusion.workflows.training.output_dir import claim_run_dir as claim_training_dir

    out = tmp_path / "repro"
    claim_output_dir(out, reproduce.OUTPUT_MARKER, ["clcr"])
    seed = out / "clcr" / "seed-41"
    (seed / "checkpoint-64").mkdir(parents=True)
    (seed / "checkpoint-64" / "model.safetensors").write_bytes(b"weights of the first run")
    (seed / "checkpoint-64" / "training_args.bin").write_bytes(b"")  # Trainer writes it into every checkpoint
    argv = tiny_train_argv("clcr", out, "--max_steps", "1", "--seeds", "41", sizes=(8, 4, 4))
    # The first run holds the whole output folder, and its seed's training run holds the seed's folder.
    with run_lock(out, "reproduce"), claim_training_dir(seed, resume=True):
        assert main(["reproduce", *argv]) == 2
        line = _error_line(capsys.readouterr().err)
        assert "another reproduce run is writing to" in line and f"(process {os.getpid()})" in line
    # A training run in the seed folder alone (a plain `train`, or a run started before the folder lock).
    with claim_training_dir(seed, resume=True):
        assert main(["reproduce", *argv]) == 2
        assert f"another run is training {seed} (process {os.getpid()})" in _error_line(capsys.readouterr().err)
    assert (seed / "checkpoint-64" / "model.safetensors").read_bytes() == b"weights of the first run"
    assert (seed / ".hf_mmfusion.lock").read_text().strip() == str(os.getpid())


def test_baseline_without_text_is_refused_before_any_seed_trains(tmp_path, capsys, monkeypatch):
    from hf_mmfusion.commands import main

    calls = []
    monkeypatch.setattr(reproduce, "run_training", lambda *a, **k: calls.append(a[2].seed))
    out = tmp_path / "repro"
    argv = tiny_train_argv("clcr", out, "--max_steps", "1", "--seeds", "1", "2", "--baseline", sizes=(8, 4, 4),
                           modalities=("audio", "visual"))
    assert main(["reproduce", *argv]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--synthetic_modalities text audio visual" in line and "<one of the columns>" not in line
    assert calls == [] and not out.exists()
