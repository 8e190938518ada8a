"""``hf-mmfusion evaluate``: metrics on a split plus the robustness table and plot."""

from __future__ import annotations

import argparse

from ..data.synthetic import SYNTHETIC_DEFAULTS
from ..utils.cpu_memory import drop_kernel_cache, retain_freed_memory
from ..utils.cpu_threads import THREADS_HELP
from ..workflows import evaluation
from ..workflows.evaluation import DEFAULT_NOISE, run_evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="saved model directory or Hub id (with its processor)")
    parser.add_argument("--dataset", default="synthetic", help="'synthetic', a save_to_disk directory or a Hub dataset id")
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--label_column", default=None, help="defaults to 'label' (regression) or 'label_class'")
    parser.add_argument("--max_text_length", type=int, default=64)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--preprocessing_num_workers", type=int, default=None,
        help="processes that preprocess the split (Dataset.map num_proc); the result is cached for the next run",
    )
    parser.add_argument("--noise", type=float, nargs="*", default=list(DEFAULT_NOISE), help="noise strengths (relative)")
    parser.add_argument("--no_drop", action="store_true", help="skip the dropped-modality conditions")
    parser.add_argument("--binning", default="mosi", choices=("mosi", "mosei", "sims"))
    parser.add_argument(
        "--polarity_boundary", type=float, default=0.0,
        help="labels >= this value count as positive in Acc-2 / F1 (e.g. 3.5 for 1-5 ratings); Acc-5 / Acc-7 need 0",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=None, help="where robustness.{csv,json,md,png} go (default: <model>/eval)")
    parser.add_argument("--synthetic_sizes", type=int, nargs=3, default=list(SYNTHETIC_DEFAULTS.sizes),
                        help="with --dataset synthetic: the sizes `train` used (its other synthetic defaults apply too)")
    parser.add_argument("--synthetic_audio_dim", type=int, default=SYNTHETIC_DEFAULTS.audio_dim)
    parser.add_argument("--synthetic_visual_dim", type=int, default=SYNTHETIC_DEFAULTS.visual_dim)
    parser.add_argument("--synthetic_seed", type=int, default=SYNTHETIC_DEFAULTS.seed)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = add_evaluate_arguments(argparse.ArgumentParser(prog="hf-mmfusion evaluate", description=evaluation.__doc__))
    args = parser.parse_args(argv)
    retain_freed_memory()
    drop_kernel_cache()
    run_evaluate(args)
    return 0

