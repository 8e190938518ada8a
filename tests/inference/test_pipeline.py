"""The ``multimodal-sentiment`` pipeline registered on import."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import pipeline  # noqa: E402
from transformers.pipelines import PIPELINE_REGISTRY  # noqa: E402
from workflow_helpers import one_torch_thread, tiny_checkpoint, tiny_dataset  # noqa: E402, F401

import hf_mmfusion  # noqa: E402, F401


@pytest.fixture(scope="module")
def rows():
    return tiny_dataset()["test"].with_format("numpy")[:3]


def direct_logits(model, processor, **inputs):
    with torch.no_grad():
        return model(**processor(**inputs, return_tensors="pt")).logits


def test_task_is_registered():
    assert "multimodal-sentiment" in PIPELINE_REGISTRY.get_supported_tasks()


def test_regression_pipeline_matches_the_model(tmp_path, rows):
    model, processor = tiny_checkpoint(tmp_path, "ssu")
    pipe = pipeline("multimodal-sentiment", model=str(tmp_path))
    assert type(pipe).__name__ == "MultimodalSentimentPipeline"
    one = {"text": rows["text"][0], "audio": rows["audio"][0], "visual": rows["visual"][0]}
    out = pipe(one)
    expected = direct_logits(model, processor, text=[one["text"]], audio=[one["audio"]], visual=[one["visual"]])
    assert out["score"] == pytest.approx(float(expected), abs=1e-5)
    assert out["polarity"] == ("positive" if out["score"] > 0 else "negative")
    many = pipe([{"text": t, "audio": a, "visual": v} for t, a, v in zip(rows["text"], rows["audio"], rows["visual"])])
    expected = direct_logits(model, processor, text=list(rows["text"]), audio=list(rows["audio"]), visual=list(rows["visual"]))
    assert [m["score"] for m in many] == pytest.approx(expected.view(-1).tolist(), abs=1e-5)
    # A plain string is text only; the model treats audio and visual as missing.
    text_only = pipe(str(rows["text"][1]))
    assert np.isfinite(text_only["score"])
    with pytest.raises(ValueError, match="dict"):
        pipe(123)


def test_classification_pipeline_gives_labels_and_probabilities(tmp_path, rows):
    model, processor = tiny_checkpoint(tmp_path, "clcr", num_labels=3)
    pipe = pipeline("multimodal-sentiment", model=str(tmp_path))
    npy = tmp_path / "visual.npy"
    np.save(npy, rows["visual"][0])
    out = pipe({"text": rows["text"][0], "audio": rows["audio"][0], "visual": str(npy)})
    probs = direct_logits(model, processor, text=[rows["text"][0]], audio=[rows["audio"][0]], visual=[rows["visual"][0]]).softmax(-1)[0]
    assert out["probabilities"] == pytest.approx(probs.tolist(), abs=1e-5)
    assert out["label"] == model.config.id2label[int(probs.argmax())] and out["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    ranked = pipe({"text": rows["text"][0]}, top_k=2)
    assert len(ranked) == 2 and ranked[0]["score"] >= ranked[1]["score"]


def test_empty_batches_and_unknown_keys(tmp_path, rows):
    tiny_checkpoint(tmp_path, "clcr")
    pipe = pipeline("multimodal-sentiment", model=str(tmp_path))
    assert pipe([]) == []
    with pytest.raises(ValueError, match=r"unknown keys \['audi0'\]"):
        pipe({"text": rows["text"][0], "audi0": rows["audio"][0]})
    # Records of one batch may give different modalities: the missing one is masked.
    mixed = pipe([{"text": rows["text"][0], "audio": rows["audio"][0]}, {"text": rows["text"][1]}])
    assert mixed[1]["score"] == pytest.approx(pipe({"text": rows["text"][1]})["score"], abs=1e-6)


def _drop_weights(path, prefix):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith(prefix)}, str(path / "model.safetensors"),
              metadata={"format": "pt"})


def test_partially_loaded_checkpoints_are_refused(tmp_path, capsys):
    import json

    from hf_mmfusion.commands import main
    from hf_mmfusion.inference.checkpoints import load_pretrained

    headless = tmp_path / "headless"
    tiny_checkpoint(headless, "clcr")
    _drop_weights(headless, "classifier.")
    with pytest.raises(ValueError, match=r"missing \d+ weights \(classifier\."):
        pipeline("multimodal-sentiment", model=str(headless))
    with pytest.raises(ValueError, match="classifier"):
        load_pretrained(str(headless))
    model, _ = load_pretrained(str(headless), strict=False)  # asked for explicitly, it still loads
    assert model.config.model_type == "clcr"
    assert main(["predict", str(headless), "--text", "x"]) == 2
    assert "does not match its CLCRForSequenceClassification" in capsys.readouterr().err
    assert main(["evaluate", str(headless), "--noise", "0"]) == 2
    assert "missing" in capsys.readouterr().err
    # A config switched to the other model type: every weight is missing and every stored one unexpected.
    switched = tmp_path / "switched"
    tiny_checkpoint(switched, "clcr")
    ssu_config = hf_mmfusion.SSUConfig(modalities=["text", "audio", "visual"], audio_input_dim=6, visual_input_dim=5,
                                       text_config=json.loads((switched / "config.json").read_text())["text_config"])
    ssu_config.save_pretrained(switched)
    with pytest.raises(ValueError, match=r"model_type 'ssu'\): missing \d+ weights .* unexpected weights"):
        pipeline("multimodal-sentiment", model=str(switched))
    assert main(["predict", str(switched), "--text", "x"]) == 2
    # A complete checkpoint passes the same check.
    good = tmp_path / "good"
    tiny_checkpoint(good, "ssu")
    load_pretrained(str(good))
