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
