"""Evaluate a trained checkpoint: MMSA metrics on a split plus the robustness protocol.

    python examples/evaluate_model.py runs/clcr --dataset synthetic --split test --noise 0 0.25 0.5 1 2

writes robustness.{csv,json,md,png} to runs/clcr/eval and prints the table. The same from Python:
"""

import sys

from hf_mmfusion.commands import main
from hf_mmfusion.data.datasets import encode_dataset, load_any_dataset, make_collator
from hf_mmfusion.inference.checkpoints import load_pretrained
from hf_mmfusion.workflows.evaluation import format_table, plot_robustness, robustness_rows


def evaluate_in_python(checkpoint: str, dataset: str = "synthetic", split: str = "test", **synthetic):
    """``synthetic`` (``synthetic_sizes``, ``audio_dim``, ...) rebuilds the synthetic data ``train`` used."""
    model, processor = load_pretrained(checkpoint)
    data = load_any_dataset(dataset, **synthetic)[split]
    encoded = encode_dataset(data, processor, model.config.modalities, "label", 128)
    rows = robustness_rows(model, encoded, make_collator(processor), noise_levels=(0.0, 0.5, 1.0))
    plot_robustness(rows, f"{checkpoint}/eval/robustness.png")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
