"""The synthetic demo: trains, evaluates, saves and reloads both models, and never replaces what it did not write."""

import json

import torch
from workflow_helpers import PNG_MAGIC, one_torch_thread, tiny_checkpoint  # noqa: F401

from hf_mmfusion.commands import main


def test_reduced_demo_runs_end_to_end(tmp_path, capsys):
    # The trimodal variant: exercises the text encoder and SSU's chain text graph (the full demo is bimodal).
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--output_dir", str(out), "--modalities", "text", "audio", "visual",
                 "--sizes", "16", "8", "8", "--epochs", "1", "--hidden_size", "16",
                 "--batch_size", "8", "--noise", "0", "1", "--audio_frames", "4", "8", "--visual_frames", "3", "6",
                 "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "| CLCR |" in printed and "| SSU |" in printed and "total time" in printed
    assert "mae_drop_<m>: MAE with" in printed and "lower is better" in printed  # the table's legend
    assert torch.get_num_threads() == threads  # the demo restores the caller's thread count
    results = json.loads((out / "demo_results.json").read_text())
    assert results["clcr"]["head_model"] == "CLCRForSequenceClassification"
    assert results["ssu"]["base_model"] == "SSUModel" and results["ssu"]["processor"] == "MMFusionProcessor"
    for model_type in ("clcr", "ssu"):
        assert (out / model_type / "eval" / "robustness.png").read_bytes()[:8] == PNG_MAGIC
        card = (out / model_type / "README.md").read_text()
        assert "model-index" in card and "| noise 1 |" in card
        assert {"mae_drop_text", "mae_noise1", "acc2_has0"} <= set(results[model_type])
    # A second demo into the same folder replaces the first (the training runs there are its own).
    assert main(["demo", "--output_dir", str(out), "--models", "clcr", "--modalities", "audio", "visual",
                 "--sizes", "8", "4", "4", "--epochs", "1", "--hidden_size", "16", "--batch_size", "4",
                 "--noise", "0", "--audio_frames", "4", "6", "--visual_frames", "3", "5", "--no_progress"]) == 0


def test_demo_never_replaces_a_model_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "work"
    mine = out / "clcr"
    mine.mkdir(parents=True)
    tiny_checkpoint(mine, "clcr")
    # As `hf-mmfusion train` leaves it, plus the user's notes.
    (mine / "trainer_state.json").write_text("{}")
    (mine / ".hf_mmfusion_run").write_text('{"written": ["config.json", "model.safetensors", "trainer_state.json"]}')
    (mine / "NOTES.txt").write_text("trained on the March data")
    weights = (mine / "model.safetensors").read_bytes()
    flags = ["--models", "clcr", "--modalities", "audio", "visual", "--sizes", "8", "4", "4", "--epochs", "1",
             "--hidden_size", "16", "--batch_size", "4", "--noise", "0", "--audio_frames", "4", "6",
             "--visual_frames", "3", "5", "--no_progress"]
    capsys.readouterr()
    assert main(["demo", "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "clcr" in err and "did not write" in err
    assert (mine / "NOTES.txt").read_text() == "trained on the March data"
    assert (mine / "model.safetensors").read_bytes() == weights
    assert not (out / "demo_results.json").exists()

