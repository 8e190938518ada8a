"""``hf-mmfusion reproduce``: one recipe trained for several seeds, summarised as mean +- std."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from ..data.datasets import DataArguments
from ..utils.cpu_memory import retain_freed_memory
from ..workflows.reproduce import ReproduceArguments, run_seeds, specs_from_args, summary_markdown
from ..workflows.training.arguments import ModelArguments, training_argument_defaults


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments, ReproduceArguments), prog="hf-mmfusion reproduce"
    )
    parser.set_defaults(**{**training_argument_defaults(), "output_dir": "outputs/reproduce"})
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args, repro_args = build_parser().parse_args_into_dataclasses(args=argv)
    retain_freed_memory()
    outcome = run_seeds(
        specs_from_args(model_args, data_args, training_args, repro_args),
        repro_args.seeds,
        training_args.output_dir,
        keep_checkpoints=repro_args.keep_checkpoints,
        progress=not training_args.disable_tqdm,
    )
    print(summary_markdown(outcome["summary"]), end="")
    for name, path in outcome["best_model"].items():
        print(f"{name}: best seed's model and card in {path}")
    print(f"tables: {Path(training_args.output_dir) / 'results.md'} (.csv, .json), per-seed values: per_seed.csv")
    return 0



if __name__ == "__main__":
    sys.exit(main())
