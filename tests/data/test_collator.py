import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_mmfusion.data.collator import MMFusionDataCollator
from hf_mmfusion.data.preprocess import preprocess_dataset
from hf_mmfusion.data.synthetic import (
    build_synthetic_tokenizer,
    generate_synthetic_examples,
    make_synthetic_dataset,
    synthetic_model_batch,
)
from hf_mmfusion.processing import AcousticFeatureExtractor, MMFusionProcessor, VisualFeatureExtractor
from hf_mmfusion.processing.processing_mmfusion import pad_heads


def _processor(parser=None):
    return MMFusionProcessor(
        build_synthetic_tokenizer(),
        AcousticFeatureExtractor(feature_size=16),
        VisualFeatureExtractor(feature_size=12),
        parser=parser,
    )


def _rows(processor, n=4, seed=0, label_key="label"):
    cols = generate_synthetic_examples(n, seed=seed)
    out = processor(text=cols["text"], audio=cols["audio"], visual=cols["visual"], padding=False)
    return [{k: out[k][i] for k in out} | {label_key: cols["label"][i], "id": cols["id"][i]} for i in range(n)], cols


def test_dynamic_padding_per_batch():
    proc = _processor()
    rows, cols = _rows(proc, n=6)
    collate = MMFusionDataCollator(proc)
    for chunk in (rows[:2], rows[2:]):
        batch = collate(chunk)
        assert set(batch) == {
            "input_ids", "attention_mask", "token_type_ids", "audio_features", "audio_attention_mask",
            "visual_features", "visual_attention_mask", "labels",
        }
        # Each batch is padded to its own longest row, not to a global length.
        assert batch["input_ids"].shape[1] == max(len(r["input_ids"]) for r in chunk)
        assert batch["audio_features"].shape[1] == max(len(r["audio_features"]) for r in chunk)
        assert batch["visual_attention_mask"].sum(1).tolist() == [len(r["visual_features"]) for r in chunk]
        assert batch["labels"].dtype == torch.float32
        assert torch.all(batch["input_ids"][batch["attention_mask"] == 0] == proc.tokenizer.pad_token_id)
    first = collate(rows[:2])
    assert torch.allclose(first["audio_features"][0, : len(cols["audio"][0])], torch.from_numpy(cols["audio"][0]))


def test_label_types_and_keys():
    proc = _processor()
    rows, _ = _rows(proc, n=3, label_key="labels")
    assert MMFusionDataCollator(proc)(rows)["labels"].dtype == torch.float32
    for r, c in zip(rows, (0, 1, 1)):
        r["labels"] = c
    assert MMFusionDataCollator(proc)(rows)["labels"].tolist() == [0, 1, 1]
    assert MMFusionDataCollator(proc)(rows)["labels"].dtype == torch.int64
    assert MMFusionDataCollator(proc, label_dtype="float")(rows)["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="label_dtype"):
        MMFusionDataCollator(proc, label_dtype="half")
    with pytest.raises(ValueError, match="empty"):
        MMFusionDataCollator(proc)([])


def test_dependency_heads_padded_with_minus_one_and_shifted_on_the_left():
    heads = [[-1, 2, -1], [-1, 2, 3, 1, -1]]
    right = pad_heads(heads, 5, "right")
    assert right.tolist() == [[-1, 2, -1, -1, -1], [-1, 2, 3, 1, -1]]
    left = pad_heads(heads, 5, "left")
    # Left padding moves the tokens two places, so their head indices move too.
    assert left.tolist() == [[-1, -1, -1, 4, -1], [-1, 2, 3, 1, -1]]
    proc = MMFusionProcessor(build_synthetic_tokenizer())
    rows = [
        {"input_ids": [2, 40, 3], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0], "dependency_heads": [-1, -1, -1]},
        {"input_ids": [2, 40, 41, 3], "attention_mask": [1] * 4, "token_type_ids": [0] * 4, "dependency_heads": [-1, 2, -1, -1]},
    ]
    batch = MMFusionDataCollator(proc)(rows)
    assert batch["dependency_heads"].tolist() == [[-1, -1, -1, -1], [-1, 2, -1, -1]]
    assert batch["dependency_heads"].dtype == torch.int64


def test_pad_to_multiple_of():
    proc = _processor()
    rows, _ = _rows(proc, n=2)
    batch = MMFusionDataCollator(proc, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["audio_features"].shape[1] % 8 == 0


def test_synthetic_model_batch_uses_the_processor_path():
    cols = generate_synthetic_examples(3, seed=3)
    batch = synthetic_model_batch(cols)
    proc = _processor()
    direct = proc(text=cols["text"], audio=cols["audio"], visual=cols["visual"], max_length=64, return_tensors="pt")
    assert all(torch.equal(batch[k], direct[k]) for k in direct)
    assert torch.equal(batch["labels"], torch.tensor(cols["label"], dtype=torch.float32))
    bimodal = synthetic_model_batch({k: cols[k] for k in ("audio", "visual", "label")})
    assert set(bimodal) == {"audio_features", "audio_attention_mask", "visual_features", "visual_attention_mask", "labels"}


def test_dataset_map_is_cached_and_reused(tmp_path, monkeypatch):
    make_synthetic_dataset((6, 3, 3)).save_to_disk(tmp_path / "raw")
    ds = load_from_disk(tmp_path / "raw")
    first = preprocess_dataset(ds, _processor(), batch_size=4)
    assert first["train"].column_names == [
        "id", "input_ids", "attention_mask", "token_type_ids", "audio_features", "audio_attention_mask",
        "visual_features", "visual_attention_mask", "labels",
    ]
    row = first["train"][0]
    assert np.asarray(row["audio_features"]).shape == (len(ds["train"][0]["audio"]), 16)

    def fail(*args, **kwargs):
        raise AssertionError("the processor ran again instead of reusing the cache")

    # A fresh, equal processor: same fingerprint, so the cached result is read back.
    monkeypatch.setattr(MMFusionProcessor, "__call__", fail)
    second = preprocess_dataset(ds, _processor(), batch_size=4)
    assert second["train"].cache_files == first["train"].cache_files
    assert second["train"]["labels"] == first["train"]["labels"]
    # A different processor (other truncation) is not served from that cache.
    with pytest.raises(AssertionError, match="ran again"):
        preprocess_dataset(ds, _processor(), batch_size=4, max_length=5)


def test_preprocess_subsets_and_errors():
    ds = make_synthetic_dataset((4, 2, 2), modalities=("audio", "visual"))
    proc = MMFusionProcessor(audio_feature_extractor=AcousticFeatureExtractor(feature_size=16))
    out = preprocess_dataset(ds["train"], proc, label_column="label_class", keep_columns=())
    assert out.column_names == ["audio_features", "audio_attention_mask", "labels"]
    assert MMFusionDataCollator(proc)([out[i] for i in range(4)])["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match="label_column"):
        preprocess_dataset(ds["train"], proc, label_column="score")
    with pytest.raises(ValueError, match="nothing to process"):
        preprocess_dataset(ds["train"], MMFusionProcessor(build_synthetic_tokenizer()))


class _TinyFusion(nn.Module):
    """Mean of each stream -> linear regression; enough to check what Trainer hands the model."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 4)
        self.head = nn.Linear(4 + 16 + 12, 1)
        self.seen = []

    def forward(self, input_ids, attention_mask, token_type_ids, audio_features, audio_attention_mask,
                visual_features, visual_attention_mask, labels=None):
        self.seen.append(input_ids.shape[0])

        def pool(x, m):
            m = m.unsqueeze(-1).to(x.dtype)
            return (x * m).sum(1) / m.sum(1).clamp(min=1)

        z = torch.cat([pool(self.embed(input_ids), attention_mask), pool(audio_features, audio_attention_mask),
                       pool(visual_features, visual_attention_mask)], -1)
        logits = self.head(z).squeeze(-1)
        return {"loss": nn.functional.mse_loss(logits, labels), "logits": logits}


def test_collator_works_as_trainer_data_collator(tmp_path):
    proc = _processor()
    train = preprocess_dataset(make_synthetic_dataset((8, 2, 2))["train"], proc)
    model = _TinyFusion()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=MMFusionDataCollator(proc))
    result = trainer.train()
    assert model.seen == [4, 4] and np.isfinite(result.training_loss)


def _chain_nlp():
    """``spacy.blank("en")`` plus a component writing a right-branching parse (a stand-in parser)."""
    spacy = pytest.importorskip("spacy")
    from spacy.attrs import DEP, HEAD
    from spacy.language import Language

    if "test_chain_parser" not in Language.factories:

        @Language.component("test_chain_parser")
        def chain(doc):
            if len(doc):
                arr = np.zeros((len(doc), 2), dtype=np.uint64)
                arr[1:, 0] = np.uint64(2**64 - 1)  # relative head -1
                arr[:, 1] = doc.vocab.strings.add("dep")
                arr[0, 1] = doc.vocab.strings.add("ROOT")
                doc.from_array([HEAD, DEP], arr)
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("test_chain_parser")
    return nlp


@pytest.mark.parametrize("model_name", ["clcr", "ssu"])
def test_processed_batches_train_clcr_and_ssu(model_name):
    from transformers import BertConfig

    import hf_mmfusion
    from hf_mmfusion.processing import DependencyParser

    text = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    common = dict(text_config=text.to_dict(), hidden_size=16, audio_input_dim=16, visual_input_dim=12, num_labels=1)
    if model_name == "clcr":
        config = hf_mmfusion.CLCRConfig(**common, shared_dim=8, exchange_heads=2, tcn_dilations=(1, 2, 1, 2, 1, 2))
        model = hf_mmfusion.CLCRForSequenceClassification(config)
        parser = None
    else:
        config = hf_mmfusion.SSUConfig(**common, graph_proj_dim=16, gat_heads=2, cross_attn_heads=2, fusion_topk=3,
                                       pos_bias_max_distance=6)
        model = hf_mmfusion.SSUForSequenceClassification(config)
        parser = DependencyParser(nlp=_chain_nlp())
    proc = _processor(parser=parser)
    train = preprocess_dataset(make_synthetic_dataset((4, 2, 2))["train"], proc)
    batch = MMFusionDataCollator(proc)([train[i] for i in range(4)])
    assert ("dependency_heads" in batch) == (parser is not None)
    out = model(**batch)
    assert out.logits.shape == (4, 1) and torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
