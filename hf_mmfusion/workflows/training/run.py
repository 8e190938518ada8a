"""Training CLCR and SSU with ``transformers.Trainer``: ``hf-mmfusion train`` and ``examples/train.py``.

Every ``TrainingArguments`` option is a command-line flag (``HfArgumentParser``), next to the model and
data arguments. The same run works under ``python``, ``torchrun --nproc_per_node N`` and
``accelerate launch``; on CPU with several processes the gloo backend is chosen.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoProcessor,
    PrinterCallback,
    ProgressCallback,
    TrainingArguments,
    set_seed,
)

from ...data.datasets import (
    DEFAULT_EVAL_SPLIT,
    DataArguments,
    check_dataset_modalities,
    dataset_frame_dims,
    dataset_modalities,
    encode_dataset,
    fit_feature_normalization,
    hold_out_validation,
    hub_dataset_id,
    is_regression_label,
    load_any_dataset,
    make_collator,
    num_classes,
    read_in_order,
    release_pages_per_batch,
    resolve_split,
)
from ...data.schema import read_feature_extractors
from ...hub import build_model_card, card_metrics
from ...inference.checkpoints import check_text_length
from ...utils.cpu_threads import choose_threads
from ...utils.json_values import finite_or_none
from ...utils.outputs import record_written, scratch_entries, staged_files
from ...utils.sources import cache_only_when_unreachable, model_source
from .arguments import BASELINE_MODEL_TYPE, ModelArguments, check_sharding
from .builders import (
    apply_lora,
    build_model,
    build_processor,
    check_primary_model_type,
    run_modalities,
    text_model_hint,
)
from .output_dir import (
    RUN_MARKER,
    RecordCheckpoints,
    claim_run_dir,
    is_complete_checkpoint,
    last_valid_checkpoint,
)
from .trainer import LOSS_SUFFIX, MMFusionTrainer, logits_only, make_compute_metrics


@dataclass
class TrainingOutcome:
    trainer: MMFusionTrainer
    model: Any
    processor: Any
    metrics: dict[str, float]
    output_dir: Path


def _fix_metric_direction(training_args: TrainingArguments, regression: bool) -> None:
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if not regression and metric == "mae":
        # Classification has no MAE; accuracy is the natural selection metric there.
        training_args.metric_for_best_model = metric = "accuracy"
    if metric in ("mae", "loss") or metric.endswith(LOSS_SUFFIX):
        training_args.greater_is_better = False
    elif metric:
        training_args.greater_is_better = True


def _resume_path(training_args: TrainingArguments) -> str | bool | None:
    resume = training_args.resume_from_checkpoint
    if resume in (None, "", "False", "false"):
        return None
    if resume in ("True", "true", "latest", True):
        last = last_valid_checkpoint(training_args.output_dir)
        if last is None:
            raise ValueError(
                f"resume_from_checkpoint=latest, but {training_args.output_dir} holds no complete checkpoint-* folder"
            )
        return last
    if not is_complete_checkpoint(resume):
        raise ValueError(f"resume_from_checkpoint={resume!r} is not a complete checkpoint (weights and trainer_state.json)")
    return resume


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: list | None = None,
    console_logs: bool = True,
) -> TrainingOutcome:
    """Build data, processor and model; train; evaluate; save model + processor + card + metrics.

    ``callbacks`` are added to the ``Trainer``'s; ``console_logs=False`` removes its own progress bar and
    printed log lines (for callers that show progress their own way). The output folder is locked for the
    run (see :func:`claim_run_dir`); only the first process of a distributed run takes the lock.
    """
    resume = _resume_requested(training_args)
    threads = torch.get_num_threads()
    check_sharding(training_args, model_args)
    try:
        if model_args.text_model:
            model_source(model_args.text_model, "--text_model", hint=text_model_hint())
        if model_args.model_name_or_path:
            model_source(model_args.model_name_or_path, "--model_name_or_path")
        if model_args.primary_model:
            check_primary_model_type(model_args)
        inputs = [model_args.model_name_or_path, model_args.text_model, model_args.primary_model]
        if data_args.dataset != "synthetic":
            inputs.append(data_args.dataset)
        with cache_only_when_unreachable():
            if int(os.environ.get("RANK", "0")) != 0:
                return _train(model_args, data_args, training_args, callbacks, console_logs)
            with claim_run_dir(
                training_args.output_dir, resume=resume, overwrite=data_args.overwrite_output_dir, inputs=inputs
            ):
                return _train(model_args, data_args, training_args, callbacks, console_logs)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, whatever the run chose


def _resume_requested(training_args: TrainingArguments) -> bool:
    return training_args.resume_from_checkpoint not in (None, "", "False", "false", False)


def _train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: list | None,
    console_logs: bool,
) -> TrainingOutcome:
    set_seed(training_args.seed)
    streaming = data_args.streaming
    if streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no length to count epochs by")
    raw = load_any_dataset(
        data_args.dataset, config_name=data_args.dataset_config, streaming=streaming, **data_args.synthetic_kwargs()
    )
    data_args.train_split = resolve_split(raw, data_args.train_split, data_args.dataset)
    if data_args.eval_split:
        try:
            data_args.eval_split = resolve_split(raw, data_args.eval_split, data_args.dataset)
        except ValueError:
            if data_args.eval_split != DEFAULT_EVAL_SPLIT or not data_args.validation_split_percentage:
                raise
            if streaming:
                raise ValueError(
                    f"dataset {data_args.dataset!r} has no validation split, and a streamed one cannot be held out; "
                    "give the dataset a validation split, or pass --eval_split '' to train without one"
                ) from None
            raw = hold_out_validation(raw, data_args, training_args.seed)
    if data_args.test_split and data_args.test_split not in raw:
        try:
            data_args.test_split = resolve_split(raw, data_args.test_split, data_args.dataset)
        except ValueError:
            pass  # the test split is optional: without one, no test metrics
    train_raw = raw[data_args.train_split]
    # What the processor and the model are fitted on: a streamed split's first rows, a bounded sample.
    fit_rows = train_raw.take(data_args.normalization_samples) if streaming else train_raw
    if (not any(True for _ in fit_rows.take(1))) if streaming else len(train_raw) == 0:
        raise ValueError(f"the train split {data_args.train_split!r} of {data_args.dataset!r} has no rows")
    available = dataset_modalities(train_raw)
    audio_dim, visual_dim = dataset_frame_dims(train_raw)
    regression = is_regression_label(train_raw, data_args.label_column)
    num_labels = 1 if regression else num_classes(fit_rows, data_args.label_column)

    if model_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(model_args.model_name_or_path)
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
        modalities = list(model.config.modalities)
        check_dataset_modalities(modalities, available, data_args.dataset)
    else:
        modalities = run_modalities(model_args, data_args, available)
        recorded = read_feature_extractors(data_args.dataset) if os.path.isdir(data_args.dataset) else {}
        processor = build_processor(model_args, modalities, audio_dim, visual_dim, data_args.max_text_length, recorded)
        fit_feature_normalization(processor, fit_rows)
        model = build_model(
            model_args, modalities, audio_dim, visual_dim, num_labels, tokenizer=getattr(processor, "tokenizer", None),
            label_offset=_label_mean(fit_rows, data_args.label_column) if regression else None,
        )
    check_text_length(model, data_args.max_text_length)
    torch.set_num_threads(choose_threads(model, model_args.threads))
    if model_args.lora:
        model = apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout)

    def subset(split_name: str | None, limit: int | None):
        if not split_name or split_name not in raw:
            return None
        split = raw[split_name]
        if streaming:
            return split.take(limit) if limit else split
        return split.select(range(min(limit, len(split)))) if limit else split

    splits = {
        "train": subset(data_args.train_split, data_args.max_train_samples),
        "eval": subset(data_args.eval_split, data_args.max_eval_samples),
        "test": subset(data_args.test_split, data_args.max_eval_samples),
    }
    with training_args.main_process_first(desc="preprocessing"):
        encoded = {
            name: encode_dataset(
                split, processor, modalities, data_args.label_column, data_args.max_text_length,
                num_proc=data_args.preprocessing_num_workers,
            )
            for name, split in splits.items()
            if split is not None
        }
    if streaming:
        encoded["train"] = encoded["train"].shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
    # The raw rows are no longer read: dropping them unmaps their Arrow files, whose pages preprocessing read
    # in and which would otherwise stay in the process's resident memory (their size grows with the dataset).
    raw = train_raw = fit_rows = splits = None
    gc.collect()
    for name in ("eval", "test"):
        if encoded.get(name) is not None:
            encoded[name] = read_in_order(encoded[name])

    if encoded.get("eval") is None:
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    _fix_metric_direction(training_args, regression)
    trainer = MMFusionTrainer(
        model=model,
        args=training_args,
        # Length-aware samplers read the lengths column of a `datasets.Dataset`; anything else they read row by row.
        train_dataset=(
            encoded["train"]
            if getattr(training_args, "train_sampling_strategy", "random") in ("group_by_length", "batch_rebalance")
            else release_pages_per_batch(encoded["train"])
        ),
        eval_dataset=encoded.get("eval"),
        data_collator=make_collator(processor),
        compute_metrics=make_compute_metrics(num_labels, data_args.polarity_boundary),
        preprocess_logits_for_metrics=logits_only,
        text_learning_rate=model_args.text_learning_rate,
        # Trainer saves the processor into every checkpoint, so evaluate / predict can read any of them.
        processing_class=processor,
        callbacks=[*(callbacks or []), RecordCheckpoints()],
    )
    if not console_logs:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    train_result = trainer.train(resume_from_checkpoint=_resume_path(training_args))
    metrics = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in train_result.metrics.items()}
    if encoded.get("eval") is not None:
        metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    if encoded.get("test") is not None:
        metrics.update(trainer.evaluate(encoded["test"], metric_key_prefix="test"))

    output_dir = Path(training_args.output_dir)
    final_model = trainer.model
    if trainer.is_world_process_zero():
        final_model = _save_final(trainer, final_model, processor, model_args, data_args, metrics)
    trainer.accelerator.wait_for_everyone()
    return TrainingOutcome(trainer=trainer, model=final_model, processor=processor, metrics=metrics, output_dir=output_dir)


def _label_mean(split, label_column: str) -> float:
    """Mean label of a split, read one column batch at a time (a streamed sample included)."""
    total, count = 0.0, 0
    for batch in split.select_columns([label_column]).with_format("numpy").iter(batch_size=1024):
        values = np.asarray(batch[label_column], dtype=np.float64)
        total, count = total + float(values.sum()), count + values.size
    return total / max(count, 1)


def _save_final(trainer, final_model, processor, model_args, data_args, metrics):
    """Model, processor, card, metrics and trainer state into ``output_dir``, all or nothing.

    They are written into a staging folder inside ``output_dir`` and renamed into place, the trainer state
    last: as with the checkpoints, a folder with weights and ``trainer_state.json`` is a finished save, and a
    failed one (a full disk) leaves nothing of the final model. Returns the model as saved (LoRA merged).
    """
    from safetensors import SafetensorError

    training_args = trainer.args
    output_dir = Path(training_args.output_dir)
    try:
        with staged_files(output_dir, last=("all_results.json", "trainer_state.json")) as staging:
            if model_args.lora:
                final_model.save_pretrained(staging / "adapter")
                final_model = final_model.merge_and_unload()
            final_model.save_pretrained(staging)
            processor.save_pretrained(staging)
            if model_args.model_type != BASELINE_MODEL_TYPE:
                # Without a test split the card reports the validation metrics, named as such.
                reported, card_split = card_metrics(
                    metrics, test_split=data_args.test_split or "test", eval_split=data_args.eval_split or "validation"
                )
                build_model_card(
                    final_model,
                    reported,
                    dataset_name=data_args.dataset,
                    dataset_id=hub_dataset_id(data_args.dataset),
                    eval_split=card_split,
                    training_args={**training_args.to_dict(), "text_learning_rate": model_args.text_learning_rate},
                    repo_id=None,
                ).save(staging / "README.md")
            (staging / "all_results.json").write_text(json.dumps(finite_or_none(metrics), indent=2))
            trainer.state.save_to_json(str(staging / "trainer_state.json"))
            record_written(output_dir, RUN_MARKER, scratch_entries(staging))
    except (OSError, SafetensorError) as err:
        kept = last_valid_checkpoint(output_dir)
        hint = "; the checkpoints are kept: free space and continue with --resume_from_checkpoint latest" if kept else ""
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(f"could not save the final model to {output_dir} ({reason}); nothing of it was written{hint}") from err
    return final_model

