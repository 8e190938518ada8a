"""Several seeds of one recipe, summarised as mean +- std: ``hf-mmfusion reproduce``.

Each seed is an ordinary ``hf-mmfusion train`` run (``training.run_training``): its checkpoint is selected
on the validation split (``--metric_for_best_model``), then the test split is evaluated once with it. The
best seed, again chosen on validation, is copied to ``<output_dir>/<model>/best-model`` with a model card
whose ``model-index`` carries the mean and standard deviation over the seeds.

Layout of ``--output_dir``::

    <model>/seed-<seed>/           the seed's saved model and processor (checkpoints removed)
    <model>/seed-<seed>/result.json  written last: a seed with this file is finished and never rerun
    <model>/best-model/            the best seed's model, processor and card
    results.{md,csv,json}          mean +- std per model, split and metric
    per_seed.csv                   one row per model, seed, split and metric

An interrupted run started again with the same ``--output_dir`` trains only the seeds without a
``result.json`` (an unfinished seed directory is cleared and that seed starts over). ``--output_dir`` must be
new, empty, or an earlier output of ``reproduce`` (it carries the hidden marker ``.hf_mmfusion_reproduce``);
a run holds its lock file (with its process id) while it trains, so a second run into the same folder stops
at once instead of clearing the first one's seed.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainingArguments

from ..data.datasets import DataArguments, data_modalities, hub_dataset_id
from ..hub import build_model_card, metric_eval_results, split_metrics
from ..utils.json_values import finite_or_none
from ..utils.outputs import check_output_dir, claim_output_dir, lock_holder, run_lock
from ..utils.quiet import library_output_silenced
from ..utils.sources import is_hub_id
from .training.arguments import BASELINE_MODEL_TYPE, ModelArguments
from .training.builders import check_run_arguments
from .training.run import TrainingOutcome, run_training

logger = logging.getLogger(__name__)

DEFAULT_SEEDS = (1111, 1112, 1113, 1114, 1115)
RESULT_FILE = "result.json"
BEST_DIR = "best-model"
SPLITS = ("validation", "test")
SPLIT_PREFIXES = {"validation": "eval_", "test": "test_"}
# Marks an output folder as written by ``reproduce`` and lists what it wrote there.
OUTPUT_MARKER = ".hf_mmfusion_reproduce"
SUMMARY_FILES = ("results.md", "results.csv", "results.json", "per_seed.csv")
# Arguments that differ between the seeds of one recipe, or do not change what is trained.
NOT_RECIPE_FIELDS = {
    "training": (
        "output_dir", "seed", "logging_dir", "run_name", "disable_tqdm", "resume_from_checkpoint",
        "overwrite_output_dir", "report_to", "push_to_hub", "hub_model_id", "hub_token", "save_total_limit",
        "dataloader_num_workers", "dataloader_pin_memory", "logging_steps", "logging_strategy",
    ),
    "data": ("overwrite_output_dir",),
}


@dataclass
class ReproduceArguments:
    """Which seeds, and whether the plain text fine-tune runs next to the model."""

    seeds: list[int] = field(
        default_factory=lambda: list(DEFAULT_SEEDS), metadata={"help": "Seeds to train (MMSA's 1111-1115 by default)."}
    )
    baseline: bool = field(
        default=False,
        metadata={
            "help": "Also train the plain AutoModelForSequenceClassification fine-tune of the same text encoder "
            "(text only) for every seed, reported in the same table."
        },
    )
    baseline_learning_rate: float | None = field(
        default=None, metadata={"help": "Baseline learning rate (default: --text_learning_rate, else --learning_rate)."}
    )
    baseline_num_train_epochs: float | None = field(
        default=None, metadata={"help": "Baseline epochs (default: --num_train_epochs)."}
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep each seed's checkpoint-* folders (by default only the final model stays)."}
    )


@dataclass
class RunSpec:
    """One row of the table: a name and the arguments of ``run_training`` (the seed and directory are set per seed)."""

    name: str
    model_args: ModelArguments
    data_args: DataArguments
    training_args: TrainingArguments


AfterSeed = Callable[[RunSpec, int, TrainingOutcome, Path], "dict[str, Any] | None"]


def seed_dir(output_dir: str | os.PathLike, name: str, seed: int) -> Path:
    return Path(output_dir) / name / f"seed-{seed}"


def _check_specs(specs: Sequence[RunSpec], seeds: Sequence[int]) -> None:
    if not specs:
        raise ValueError("reproduce needs at least one model to train")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for name in names:
        if not name or os.sep in name or name in (BEST_DIR, ".", ".."):
            raise ValueError(f"model name {name!r} cannot be a folder name under the output directory")
    if not seeds:
        raise ValueError("seeds must list at least one integer seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")


class _StepProgress(TrainerCallback):
    """A progress bar over one seed's optimisation steps, below the bar over seeds."""

    def __init__(self, desc: str, enabled: bool):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, desc=self.desc, position=1, leave=False, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_recipe_field(part: str, key: str, real_data: bool) -> bool:
    """Whether a recorded field can change what a seed trains (``NOT_RECIPE_FIELDS`` cannot, and the
    synthetic-data knobs cannot on a real dataset)."""
    return key not in NOT_RECIPE_FIELDS.get(part, ()) and not (part == "data" and real_data and key.startswith("synthetic_"))


def recipe(spec: RunSpec) -> dict[str, Any]:
    """What a seed's result depends on besides the seed: model, data and training arguments, without the
    fields that only steer where and how a run reports (so that they cannot block a resume)."""
    real_data = spec.data_args.dataset != "synthetic"
    parts = {"model": dataclasses.asdict(spec.model_args), "data": dataclasses.asdict(spec.data_args),
             "training": spec.training_args.to_dict()}
    payload = {part: {k: v for k, v in fields.items() if _is_recipe_field(part, k, real_data)}
               for part, fields in parts.items()}
    return json.loads(json.dumps(finite_or_none(payload), default=str))


def _field_defaults() -> dict[str, dict[str, Any]]:
    """Each recipe part's field defaults, as ``recipe`` records them."""
    defaults = {}
    for part, cls in (("model", ModelArguments), ("data", DataArguments), ("training", TrainingArguments)):
        values = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        defaults[part] = json.loads(json.dumps(finite_or_none(values), default=str))
    return defaults


def _recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Fields whose values differ. A field that one record lacks (written by a version without it) counts
    as holding its default, so a package upgrade that adds an option does not make finished seeds look like
    another recipe."""
    defaults = _field_defaults()
    real_data = new.get("data", {}).get("dataset", "synthetic") != "synthetic"
    absent = object()
    changes = []
    for part in sorted(set(old) | set(new)):
        before, after, default = old.get(part, {}), new.get(part, {}), defaults.get(part, {})
        for key in sorted(set(before) | set(after)):
            if not _is_recipe_field(part, key, real_data):
                continue
            fallback = default.get(key, absent)
            value_before, value_after = before.get(key, fallback), after.get(key, fallback)
            # Missing on one side without a default to stand in for it: nothing to compare.
            if value_before is not absent and value_after is not absent and value_before != value_after:
                changes.append(f"{part}.{key}: {value_before!r} -> {value_after!r}")
    return changes


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite_or_none(payload), indent=2))
    os.replace(tmp, path)


def _load_result(directory: Path) -> dict[str, Any] | None:
    path = directory / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    for split in SPLITS:
        result[split] = {k: (math.nan if v is None else v) for k, v in result.get(split, {}).items()}
    return result


def train_seed(spec: RunSpec, seed: int, directory: Path, after_seed: AfterSeed | None = None,
               keep_checkpoints: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``spec`` with ``seed`` into ``directory`` and write its ``result.json`` (last)."""
    if directory.exists():
        holder = lock_holder(directory)
        if holder is not None:
            raise ValueError(
                f"another run is training {directory}" + (f" (process {holder})" if holder else "")
                + "; wait for it to finish or choose another --output_dir"
            )
        shutil.rmtree(directory)  # an unfinished seed: its partial checkpoints belong to no result
    training_args = dataclasses.replace(spec.training_args, seed=seed, output_dir=str(directory))
    outcome = run_training(
        copy.deepcopy(spec.model_args),
        copy.deepcopy(spec.data_args),
        training_args,
        callbacks=[_StepProgress(f"{spec.name} seed {seed}", progress)],
        console_logs=False,
    )
    state = outcome.trainer.state
    args = outcome.trainer.args
    result: dict[str, Any] = {
        "recipe": recipe(spec),
        "model": spec.name,
        "model_type": spec.model_args.model_type,
        "seed": seed,
        "selection_metric": (args.metric_for_best_model or "").removeprefix("eval_"),
        "greater_is_better": bool(args.greater_is_better),
        "best_checkpoint_step": _checkpoint_step(state.best_model_checkpoint),
        "global_steps": state.global_step,
        "train_runtime": outcome.metrics.get("train_runtime"),
        "validation": split_metrics(outcome.metrics, SPLIT_PREFIXES["validation"]),
        "test": split_metrics(outcome.metrics, SPLIT_PREFIXES["test"]),
    }
    if after_seed is not None:
        result.update(after_seed(spec, seed, outcome, directory) or {})
    if not keep_checkpoints:
        for checkpoint in directory.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    _write_json(directory / RESULT_FILE, result)
    return result


def _checkpoint_step(path: str | None) -> int | None:
    if not path:
        return None
    tail = Path(path).name.removeprefix("checkpoint-")
    return int(tail) if tail.isdigit() else None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; NaN for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``{model: {"seeds": [...], split: {metric: {"mean", "std", "values"}}}}`` from per-seed results."""
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for split in SPLITS:
            keys = list(dict.fromkeys(k for r in runs for k in r.get(split, {})))
            stats = {}
            for key in keys:
                values = [r[split][key] for r in runs if key in r.get(split, {})]
                mean, std = mean_std(values)
                stats[key] = {"mean": mean, "std": std, "values": values}
            if stats:
                entry[split] = stats
        summary[name] = entry
    return summary


def _cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return ""
    mean, std = stats["mean"], stats["std"]
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def summary_markdown(summary: dict[str, Any], splits: Sequence[str] = SPLITS) -> str:
    """One row per model and split, one column per metric, cells ``mean ± std`` over the seeds."""
    metrics = list(dict.fromkeys(k for e in summary.values() for s in splits for k in e.get(s, {})))
    lines = ["| model | split | seeds | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for name, entry in summary.items():
        for split in splits:
            if split not in entry:
                continue
            cells = [_cell(entry[split].get(k)) for k in metrics]
            lines.append(f"| {name} | {split} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(output_dir: Path, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``results.{md,csv,json}`` (mean +- std) and ``per_seed.csv`` under ``output_dir``."""
    summary = summarize(results)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(summary_markdown(summary))
    rows = [
        {"model": name, "split": split, "metric": key, "mean": s["mean"], "std": s["std"], "n": len(s["values"])}
        for name, entry in summary.items()
        for split in SPLITS
        for key, s in entry.get(split, {}).items()
    ]
    _write_csv(output_dir / "results.csv", ["model", "split", "metric", "mean", "std", "n"], rows)
    per_seed = [
        {"model": name, "seed": r["seed"], "split": split, "metric": key, "value": value}
        for name, runs in results.items()
        for r in runs
        for split in SPLITS
        for key, value in r.get(split, {}).items()
    ]
    _write_csv(output_dir / "per_seed.csv", ["model", "seed", "split", "metric", "value"], per_seed)
    _write_json(output_dir / "results.json", {"summary": summary, "per_seed": results})
    return summary


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def best_seed(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the best validation value of its selection metric (the test split plays no part)."""

    def key(run):
        value = run["validation"].get(run["selection_metric"], math.nan)
        if value is None or math.isnan(value):
            return math.inf
        return -value if run["greater_is_better"] else value

    return min(runs, key=key)


def save_best_model(spec: RunSpec, runs: Sequence[dict[str, Any]], summary_entry: dict[str, Any], output_dir: Path) -> Path:
    """Copy the best seed's model to ``<model>/best-model`` and write its card (mean +- std in ``model-index``)."""
    best = best_seed(runs)
    source = seed_dir(output_dir, spec.name, best["seed"])
    target = output_dir / spec.name / BEST_DIR
    tmp = target.with_name(BEST_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("checkpoint-*", RESULT_FILE))
    split = "test" if "test" in summary_entry else "validation"
    stats = summary_entry.get(split, {})
    card = _summary_card(spec, tmp, {k: s["mean"] for k, s in stats.items()}, {k: s["std"] for k, s in stats.items()},
                         len(runs), split)
    card.save(tmp / "README.md")
    _write_json(tmp / "selection.json", {
        "seed": best["seed"], "selection_metric": best["selection_metric"],
        "validation": best["validation"], "seeds": [r["seed"] for r in runs],
    })
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def _summary_card(spec: RunSpec, model_dir: Path, means: dict, stds: dict, num_runs: int, split: str):
    from huggingface_hub import ModelCard, ModelCardData

    dataset = spec.data_args.dataset
    dataset_id = hub_dataset_id(dataset)
    if spec.model_args.model_type != BASELINE_MODEL_TYPE:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        return build_model_card(
            model, means, dataset_name=dataset, dataset_id=dataset_id, eval_split=split,
            training_args=spec.training_args, metric_std=stds, num_runs=num_runs,
        )
    results = metric_eval_results(
        means, regression="mae" in means, dataset_name=dataset, dataset_id=dataset_id,
        eval_split=split, metric_std=stds, num_runs=num_runs,
    )
    data = ModelCardData(
        library_name="transformers", tags=["hf_mmfusion", "text-baseline"], model_name=spec.name,
        datasets=[dataset_id] if dataset_id else None, eval_results=results or None,
        base_model=spec.model_args.text_model if spec.model_args.text_model and is_hub_id(spec.model_args.text_model)
        else None,
    )
    body = (
        f"Plain `AutoModelForSequenceClassification` fine-tune of the text encoder "
        f"`{spec.model_args.text_model or 'tiny random BERT'}` (text only), the best of {num_runs} seeds on the "
        f"validation split; the `model-index` gives the mean and standard deviation over the seeds on the "
        f"{split} split."
    )
    return ModelCard.from_template(data, model_id=spec.name, model_summary=body)


def run_seeds(
    specs: Sequence[RunSpec],
    seeds: Sequence[int],
    output_dir: str | os.PathLike,
    after_seed: AfterSeed | None = None,
    keep_checkpoints: bool = False,
    progress: bool = True,
    save_best: bool = True,
) -> dict[str, Any]:
    """Train every spec for every seed (skipping finished ones), write the tables, save each best model.

    Returns the summary (see :func:`summarize`) with ``"per_seed"`` results and ``"best_model"`` paths.
    """
    with library_output_silenced():
        return _run_seeds(specs, seeds, output_dir, after_seed, keep_checkpoints, progress, save_best)


def _run_seeds(specs, seeds, output_dir, after_seed, keep_checkpoints, progress, save_best) -> dict[str, Any]:

    seeds = [int(s) for s in seeds]
    _check_specs(specs, seeds)
    output_dir = Path(output_dir)
    available: dict[tuple, list[str]] = {}
    for spec in specs:
        # Every model is checked against the data before the first seed trains, the last one included.
        key = (spec.data_args.dataset, spec.data_args.dataset_config, spec.data_args.train_split,
               tuple(spec.data_args.synthetic_modalities))
        if key not in available:
            available[key] = data_modalities(spec.data_args)
        check_run_arguments(spec.model_args, spec.data_args, available[key])
    inputs = [spec.data_args.dataset for spec in specs if spec.data_args.dataset != "synthetic"]
    inputs += [path for spec in specs for path in (spec.model_args.model_name_or_path, spec.model_args.text_model)]
    check_output_dir(output_dir, OUTPUT_MARKER, "reproduce", inputs=inputs)
    output_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(output_dir, "reproduce"):
        claim_output_dir(output_dir, OUTPUT_MARKER, [*(spec.name for spec in specs), *SUMMARY_FILES])
        return _run_locked(specs, seeds, output_dir, after_seed, keep_checkpoints, progress, save_best)


def _run_locked(specs, seeds, output_dir, after_seed, keep_checkpoints, progress, save_best) -> dict[str, Any]:
    from tqdm.auto import tqdm

    results: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
    todo = []
    for spec in specs:
        wanted = recipe(spec)
        for seed in seeds:
            directory = seed_dir(output_dir, spec.name, seed)
            done = _load_result(directory)
            changes = _recipe_changes(done["recipe"], wanted) if done is not None and "recipe" in done else []
            if changes:
                raise ValueError(
                    f"{directory} holds a finished run of a different recipe ({'; '.join(changes[:5])}); "
                    "pass another output directory, or delete that one to retrain"
                )
            if done is not None:
                results[spec.name].append(done)
            else:
                todo.append((spec, seed))
    total = len(specs) * len(seeds)
    bar = tqdm(total=total, initial=total - len(todo), desc="seeds", position=0, disable=not progress, dynamic_ncols=True)
    if len(todo) < total:
        logger.info("continuing in %s: %d of %d runs already finished", output_dir, total - len(todo), total)
    for spec, seed in todo:
        bar.set_postfix_str(f"{spec.name} seed {seed}")
        result = train_seed(spec, seed, seed_dir(output_dir, spec.name, seed), after_seed, keep_checkpoints, progress)
        results[spec.name].append(result)
        write_summary(output_dir, _ordered(results, seeds))
        bar.update()
    bar.close()
    results = _ordered(results, seeds)
    summary = write_summary(output_dir, results)
    best_models = {}
    if save_best:
        for spec in specs:
            best_models[spec.name] = str(save_best_model(spec, results[spec.name], summary[spec.name], output_dir))
    return {"summary": summary, "per_seed": results, "best_model": best_models}


def _ordered(results: dict[str, list[dict[str, Any]]], seeds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    rank = {seed: i for i, seed in enumerate(seeds)}
    return {name: sorted(runs, key=lambda r: rank.get(r["seed"], len(rank))) for name, runs in results.items()}


def baseline_spec(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                  repro_args: ReproduceArguments) -> RunSpec:
    """The plain text fine-tune over the same text encoder, tokenizer length and training arguments."""
    args = ModelArguments(
        model_type=BASELINE_MODEL_TYPE,
        text_model=model_args.text_model,
        modalities=["text"],
        tiny_text_layers=model_args.tiny_text_layers,
        tiny_text_hidden_size=model_args.tiny_text_hidden_size,
    )
    lr = repro_args.baseline_learning_rate or model_args.text_learning_rate or training_args.learning_rate
    epochs = repro_args.baseline_num_train_epochs or training_args.num_train_epochs
    return RunSpec(BASELINE_MODEL_TYPE, args, data_args,
                   dataclasses.replace(training_args, learning_rate=lr, num_train_epochs=epochs))


def specs_from_args(model_args, data_args, training_args, repro_args) -> list[RunSpec]:
    specs = [RunSpec(model_args.model_type, model_args, data_args, training_args)]
    if repro_args.baseline and model_args.model_type != BASELINE_MODEL_TYPE:
        specs.append(baseline_spec(model_args, data_args, training_args, repro_args))
    return specs

