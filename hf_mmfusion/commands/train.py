"""``hf-mmfusion train``: every ``TrainingArguments`` flag next to the model and data arguments."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from ..data.datasets import DataArguments
from ..hub import is_quality_metric
from ..utils.cpu_memory import drop_kernel_cache, retain_freed_memory
from ..workflows.training.arguments import SYNTHETIC_RECIPE, ModelArguments, training_argument_defaults
from ..workflows.training.run import run_training


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**training_argument_defaults())
    return parser


def parse_train_args(argv: list[str] | None = None):
    """(ModelArguments, DataArguments, TrainingArguments) from flags, or from one .json/.yaml file."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0]).resolve()
        values = json.loads(path.read_text()) if path.suffix == ".json" else None
        if values is None:
            return parser.parse_yaml_file(str(path))
        recipe = SYNTHETIC_RECIPE if values.get("dataset", "synthetic") == "synthetic" else {}
        merged = {**training_argument_defaults(), **recipe, **values}
        return parser.parse_dict(merged)
    argv = _boolean_fsdp(argv)
    if _flag_value(argv, "--dataset", "synthetic") == "synthetic":
        parser.set_defaults(**SYNTHETIC_RECIPE)
    return parser.parse_args_into_dataclasses(args=argv)


def _flag_value(argv: list[str], flag: str, default: str) -> str:
    for i, item in enumerate(argv):
        if item == flag and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return default


# `TrainingArguments(fsdp=True)` means full sharding, but a command line passes the word `true`, which
# `TrainingArguments` refuses as an unknown sharding option.
_FSDP_WORDS = {"true": "full_shard", "yes": "full_shard", "1": "full_shard", "false": "", "no": "", "0": ""}


def _boolean_fsdp(argv: list[str]) -> list[str]:
    """``argv`` with a boolean word after ``--fsdp`` in its string form (``true`` -> ``full_shard``, ``false`` -> off)."""
    out = []
    for i, item in enumerate(argv):
        if i > 0 and argv[i - 1] == "--fsdp":
            item = _FSDP_WORDS.get(item.strip().lower(), item)
        elif item.startswith("--fsdp="):
            value = item.split("=", 1)[1]
            item = "--fsdp=" + _FSDP_WORDS.get(value.strip().lower(), value)
        out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_train_args(argv)
    retain_freed_memory()
    drop_kernel_cache()
    outcome = run_training(model_args, data_args, training_args)
    if outcome.trainer.is_world_process_zero():
        shown = {k: round(v, 4) for k, v in outcome.metrics.items() if isinstance(v, float) and is_quality_metric(k)}
        print(json.dumps(shown, indent=2))
        print(f"saved model, processor and card to {outcome.output_dir}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
