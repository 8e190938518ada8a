"""Evaluation: metrics, the robustness protocol, and what `hf-mmfusion evaluate` refuses before any work."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from workflow_helpers import (  # noqa: F401
    EVALUATE_FLAGS,
    PNG_MAGIC,
    must_not_run,
    one_error_line,
    one_torch_thread,
    tiny_checkpoint,
    tiny_dataset,
)

from hf_mmfusion.commands import main
from hf_mmfusion.data.datasets import encode_dataset, make_collator
from hf_mmfusion.workflows.evaluation import perturb_batch, predict_dataset, robustness_rows, score


def test_perturb_batch_noise_is_relative_masked_and_seeded(saved):
    _, model, processor = saved
    rows = tiny_dataset()["test"].with_format("numpy")[:4]
    batch = dict(processor(text=list(rows["text"]), audio=list(rows["audio"]), visual=list(rows["visual"]),
                           return_tensors="pt"))
    noisy = perturb_batch(batch, model, noise=0.5, generator=torch.Generator().manual_seed(1))
    again = perturb_batch(batch, model, noise=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy["audio_features"], again["audio_features"])
    mask = batch["audio_attention_mask"].bool()
    delta = noisy["audio_features"] - batch["audio_features"]
    assert torch.equal(delta[~mask], torch.zeros_like(delta[~mask]))  # padding untouched
    rms = batch["audio_features"][mask].pow(2).mean().sqrt()
    assert float(delta[mask].std() / rms) == pytest.approx(0.5, rel=0.25)
    # Text noise goes onto the word embeddings.
    assert "input_ids" not in noisy and noisy["inputs_embeds"].shape[:2] == batch["input_ids"].shape
    dropped = perturb_batch(batch, model, drop=("text", "visual"))
    assert set(dropped) == {"audio_features", "audio_attention_mask"}
    with pytest.raises(ValueError, match="unknown modality"):
        perturb_batch(batch, model, drop=("smell",))


def test_evaluate_command_writes_table_csv_json_and_plot(saved, data_dir, tmp_path, capsys):
    path, model, processor = saved
    out = tmp_path / "eval"
    assert main(["evaluate", str(path), "--dataset", str(data_dir), "--split", "test", "--noise", "0", "0.5", "3",
                 "--output_dir", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "| condition | mae |" in printed
    rows = json.loads((out / "robustness.json").read_text())
    assert [r["condition"] for r in rows] == ["clean", "noise 0.5", "noise 3", "drop text", "drop audio", "drop visual"]
    with (out / "robustness.csv").open() as f:
        assert [r["condition"] for r in csv.DictReader(f)] == [r["condition"] for r in rows]
    assert (out / "robustness.png").read_bytes()[:8] == PNG_MAGIC
    assert "| noise 3 |" in (out / "robustness.md").read_text()
    # The clean row is the plain metric of the model's predictions; noise and drops change them.
    encoded = encode_dataset(tiny_dataset()["test"], processor, model.config.modalities, "label", 64)
    preds, labels = predict_dataset(model, encoded, make_collator(processor), progress=False)
    assert rows[0]["mae"] == pytest.approx(score(model, preds, labels)["mae"], rel=1e-6)
    noisy, _ = predict_dataset(model, encoded, make_collator(processor), noise=3.0, progress=False)
    assert not np.allclose(noisy, preds)
    again = robustness_rows(model, encoded, make_collator(processor), noise_levels=(0, 0.5, 3), seed=0, progress=False)
    assert [r["mae"] for r in again] == pytest.approx([r["mae"] for r in rows])



def test_evaluate_refuses_a_label_column_of_the_other_problem_type(checkpoint, tmp_path, capsys, monkeypatch):
    from workflow_helpers import tiny_dataset

    import hf_mmfusion.workflows.evaluation as evaluation

    monkeypatch.setattr(evaluation, "encode_dataset", must_not_run)
    assert main(["evaluate", str(checkpoint), "--label_column", "label_class", "--output_dir", str(tmp_path / "ev"),
                 *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--label_column 'label_class' holds class ids", "regressor", "['label']")

    classifier = tmp_path / "classifier"
    tiny_checkpoint(classifier, "clcr", num_labels=2)
    assert main(["evaluate", str(classifier), "--label_column", "label", "--output_dir", str(tmp_path / "ev"),
                 *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--label_column 'label' holds float values", "classifier", "class ids 0..1")
    assert not (tmp_path / "ev").exists()

    from hf_mmfusion.workflows.evaluation import check_label_column

    split = tiny_dataset()["test"]
    model = evaluation.load_pretrained(str(classifier), progress=False)[0]
    check_label_column(model, split, "label_class")  # 0/1 ids for a two-class model
    model.config.num_labels = 1
    model.config.problem_type = "regression"
    check_label_column(model, split, "label")
    three = split.map(lambda row, i: {"label_class": i % 3}, with_indices=True)
    model, _ = evaluation.load_pretrained(str(classifier), progress=False)
    with pytest.raises(ValueError, match="outside 0..1"):
        check_label_column(model, three, "label_class")


def test_evaluate_checks_its_output_folder_before_computing(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_pretrained", must_not_run)
    blocker = tmp_path / "results.md"
    blocker.write_text("my notes")
    for target, message in ((blocker, "is a file, not a folder"), (blocker / "eval", "cannot be created")):
        assert main(["evaluate", str(checkpoint), "--output_dir", str(target), *EVALUATE_FLAGS]) == 2
        one_error_line(capsys, "--output_dir", str(target), message)
    # The default folder, <model>/eval, is checked too.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "eval").write_text("not a folder")
    assert main(["evaluate", str(model_dir), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "the default --output_dir", "is a file")
    if os.geteuid() != 0:  # permissions do not bind root
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        read_only.chmod(0o555)
        try:
            assert main(["evaluate", str(checkpoint), "--output_dir", str(read_only / "eval"), *EVALUATE_FLAGS]) == 2
            one_error_line(capsys, "cannot be written")
        finally:
            read_only.chmod(0o755)
    assert blocker.read_text() == "my notes"


def test_evaluate_never_writes_over_result_files_it_did_not_write(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.evaluation as evaluation

    out = tmp_path / "results"
    out.mkdir()
    (out / "robustness.csv").write_text("my own table")
    (out / "notes.txt").write_text("keep me")
    load = evaluation.load_pretrained
    monkeypatch.setattr(evaluation, "load_pretrained", must_not_run)
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--output_dir", "robustness.csv", "did not write")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "robustness.csv"]
    assert (out / "robustness.csv").read_text() == "my own table"
    # Another folder the user keeps files in takes the results, and a later run replaces only those.
    monkeypatch.setattr(evaluation, "load_pretrained", load)
    (out / "robustness.csv").rename(tmp_path / "mine.csv")
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 0
    names = {"robustness.csv", "robustness.json", "robustness.md", "robustness.png"}
    assert {p.name for p in out.iterdir()} == names | {"notes.txt", evaluation.OUTPUT_MARKER}
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 0
    assert {p.name for p in out.iterdir()} == names | {"notes.txt", evaluation.OUTPUT_MARKER}
    assert (out / "notes.txt").read_text() == "keep me"
    # A result file the marker does not list is the user's, even beside results evaluate wrote.
    from hf_mmfusion.utils.outputs import record_written

    (out / "robustness.md").write_text("mine now")
    record_written(out, evaluation.OUTPUT_MARKER, ["robustness.csv", "robustness.json", "robustness.png"], reset=True)
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "robustness.md", "did not write")
    assert (out / "robustness.md").read_text() == "mine now"

