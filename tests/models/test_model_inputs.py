"""Hostile model inputs: both fusion models answer with the same clear ``ValueError`` or cast, never a raw
``IndexError`` / dtype ``RuntimeError`` / silent broadcast."""

import pytest
import torch
from transformers import BertConfig

from hf_mmfusion import CLCRConfig, CLCRForSequenceClassification, SSUConfig, SSUForSequenceClassification

AUDIO_DIM, VISUAL_DIM, VOCAB, POSITIONS = 5, 7, 99, 16
TINY = {
    "clcr": dict(hidden_size=16, shared_dim=8, exchange_heads=2, tcn_dilations=[1, 2, 4], intra_pair_segments=4),
    "ssu": dict(hidden_size=16, graph_proj_dim=16, gat_heads=2, cross_attn_heads=2, fusion_topk=3,
                pos_bias_max_distance=6, text_graph="chain"),
}


def build(model_type, num_labels=1, **overrides):
    torch.manual_seed(0)
    text = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=POSITIONS)
    config_cls, model_cls = {"clcr": (CLCRConfig, CLCRForSequenceClassification),
                             "ssu": (SSUConfig, SSUForSequenceClassification)}[model_type]
    config = config_cls(modalities=["text", "audio", "visual"], text_config=text.to_dict(), audio_input_dim=AUDIO_DIM,
                        visual_input_dim=VISUAL_DIM, num_labels=num_labels, **{**TINY[model_type], **overrides})
    return model_cls(config).eval()


def batch(size=2, tokens=6, frames=4):
    g = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(1, VOCAB, (size, tokens), generator=g),
        "attention_mask": torch.ones(size, tokens, dtype=torch.long),
        "audio_features": torch.randn(size, frames, AUDIO_DIM, generator=g),
        "visual_features": torch.randn(size, frames, VISUAL_DIM, generator=g),
    }


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_labels_are_checked(model_type):
    model = build(model_type)
    with pytest.raises(ValueError, match=r"`labels` must have shape \[batch\]"):
        model(**batch(), labels=torch.tensor([0.5]))  # one score for a batch of two
    model(**batch(), labels=torch.tensor([0.5, -1.0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(**batch(), labels=torch.tensor([float("nan"), 1.0]))
    classifier = build(model_type, num_labels=3)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\]"):
        classifier(**batch(), labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\]"):
        classifier(**batch(), labels=torch.tensor([-1, 0]))
    assert torch.isfinite(classifier(**batch(), labels=torch.tensor([0, 2])).loss)


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_feature_dtypes_are_cast_to_the_model(model_type):
    model = build(model_type)
    inputs = batch()
    with torch.no_grad():
        reference = model(**inputs).logits
        as_double = model(**{**inputs, "audio_features": inputs["audio_features"].double(),
                             "visual_features": inputs["visual_features"].double()}).logits
        as_int = model(**{**inputs, "audio_features": inputs["audio_features"].round().int()}).logits
        half = build(model_type).to(torch.bfloat16)
        from_fp32 = half(**inputs).logits
        model_fp32 = build(model_type)
        from_bf16 = model_fp32(**{**inputs, "audio_features": inputs["audio_features"].bfloat16(),
                                  "visual_features": inputs["visual_features"].bfloat16()}).logits
    torch.testing.assert_close(as_double, reference)
    assert as_int.dtype == torch.float32 and torch.isfinite(as_int).all()
    assert from_fp32.dtype == torch.bfloat16 and torch.isfinite(from_fp32.float()).all()
    assert torch.isfinite(from_bf16).all()


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_text_longer_than_the_position_table(model_type):
    model = build(model_type)
    with pytest.raises(ValueError, match=f"more than the text encoder's {POSITIONS} positions"):
        model(**batch(tokens=POSITIONS + 1))
    model(**batch(tokens=POSITIONS))


def test_check_labels_hands_the_losses_labels_of_the_logits_dtype():
    """Regression and multi-label targets come back in the logits' dtype (integer scores included);
    class ids stay integers."""
    from types import SimpleNamespace

    from hf_mmfusion.models.inputs import check_labels

    logits = torch.zeros(2, 1, dtype=torch.bfloat16)
    out = check_labels(SimpleNamespace(problem_type=None), logits, torch.tensor([1, -2]))
    assert out.dtype == torch.bfloat16 and out.tolist() == [1.0, -2.0]
    config = SimpleNamespace(problem_type=None)
    ids = check_labels(config, torch.zeros(2, 3), torch.tensor([0, 2]))
    assert ids.dtype == torch.long and config.problem_type == "single_label_classification"
    multi = check_labels(SimpleNamespace(problem_type=None), torch.zeros(2, 3), torch.tensor([[0, 1, 1], [1, 0, 0]], dtype=torch.float64))
    assert multi.dtype == torch.float32
