"""``hf_mmfusion.explain`` over a few hundred samples, against plain prediction of the same samples.

    python benchmarks/explain.py [--samples 300] [--repeats 3] [--threads 1]

Builds a CLCR and an SSU model of the demo's size (hidden 32, text, audio and visual, untrained: the
cost does not depend on the weights) over the built-in synthetic test split, and times, best of
``--repeats``:

- baseline: ``evaluation.predict_dataset`` over the split (encoding included), one clean pass;
- analysis: ``explain`` (the same encoding, the forward pass with the analysis outputs, one occlusion pass
  per modality, the PCA map of CLCR's summaries);
- report: ``Explanation.save`` (``explain.json``, every figure, PNG and SVG, and ``index.html``).

The analysis does 1 + M forward passes where the baseline does one, so about (1 + M)x is its floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from timing import best

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(model_type: str):
    import torch

    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model, build_processor

    torch.manual_seed(0)
    overrides = {"clcr": "exchange_heads=2,tcn_dilations=[1,2,4],intra_pair_segments=4", "ssu": None}[model_type]
    args = ModelArguments(model_type=model_type, hidden_size=32, config_overrides=overrides)
    modalities = ["text", "audio", "visual"]
    processor = build_processor(args, modalities, 16, 12, 64)
    model = build_model(args, modalities, 16, 12, 1, tokenizer=processor.tokenizer).eval()
    return model, processor


def measure(model, processor, split, repeats: int) -> tuple[float, float, float]:
    import hf_mmfusion
    from hf_mmfusion.data.datasets import encode_dataset, make_collator
    from hf_mmfusion.workflows.evaluation import predict_dataset

    def baseline():
        encoded = encode_dataset(split, processor, model.config.modalities, "label", 64)
        predict_dataset(model, encoded, make_collator(processor), progress=False)

    def analysis():
        return hf_mmfusion.explain(model, processor, split, max_length=64)

    # One untimed run of each warms the caches (dataset map fingerprints, lazy imports, matplotlib fonts).
    baseline()
    exp = analysis()
    with tempfile.TemporaryDirectory() as tmp:
        exp.save(Path(tmp) / "warm")
        t_base, t_explain = best(baseline, repeats), best(analysis, repeats)
        t_save = best(lambda: exp.save(Path(tmp) / "report"), repeats)
    return t_base, t_explain, t_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import datasets
    import torch

    from hf_mmfusion.data.datasets import fit_feature_normalization, load_any_dataset

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)

    data = load_any_dataset("synthetic", synthetic_sizes=(64, 8, args.samples))
    split = data["test"]
    print(f"{args.samples} samples (text + audio + visual), {args.threads} thread(s), best of {args.repeats}\n")
    print("| model | predict (s) | explain (s) | explain / predict | report files (s) |")
    print("|---|---|---|---|---|")
    for model_type in ("clcr", "ssu"):
        model, processor = build(model_type)
        fit_feature_normalization(processor, data["train"])
        t_base, t_explain, t_save = measure(model, processor, split, args.repeats)
        print(f"| {model_type.upper()} | {t_base:.2f} | {t_explain:.2f} | {t_explain / t_base:.1f}x | {t_save:.2f} |")


if __name__ == "__main__":
    main()
