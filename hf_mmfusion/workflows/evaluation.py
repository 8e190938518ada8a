"""Evaluation: metrics on a split plus the robustness protocol (``hf-mmfusion evaluate``).

Robustness follows the papers' protocol: zero-mean Gaussian noise of several strengths added to the input
features of every active modality, and each modality dropped in turn (the model sees it as missing). Noise
strength ``sigma`` is relative to each modality's feature scale: the noise added to a modality has standard
deviation ``sigma`` times the root-mean-square of its clean features over real (unpadded) positions, so
``sigma = 1`` means a signal-to-noise ratio of 1 for text embeddings and acoustic/visual frames alike.
Text noise goes onto the word embeddings (``inputs_embeds``).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import (
    DataArguments,
    check_dataset_modalities,
    dataset_modalities,
    encode_dataset,
    is_regression_label,
    load_any_dataset,
    make_collator,
    num_classes,
    read_in_order,
    resolve_split,
)
from ..inference.checkpoints import check_text_length, is_regression, load_pretrained, model_modalities
from ..models.configuration_common import MODALITIES
from ..utils.cpu_threads import model_threads
from ..utils.outputs import record_written, staged_files, written_entries

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "dependency_heads", "inputs_embeds")
DEFAULT_NOISE = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def _rms(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    real = values if mask is None else values[mask.bool()]
    if real.numel() == 0:
        return values.new_tensor(0.0)
    return real.float().pow(2).mean().sqrt()


def perturb_batch(
    batch: dict,
    model,
    noise: float = 0.0,
    drop: Sequence[str] = (),
    generator: torch.Generator | None = None,
) -> dict:
    """A copy of a model-input batch with relative Gaussian noise and the ``drop`` modalities removed."""
    batch = dict(batch)
    for modality in drop:
        if modality not in MODALITIES:
            raise ValueError(f"drop: unknown modality {modality!r}; choose among {MODALITIES}")
        keys = TEXT_KEYS if modality == "text" else (f"{modality}_features", f"{modality}_attention_mask")
        for key in keys:
            batch.pop(key, None)
    if noise <= 0:
        return batch
    for modality in ("audio", "visual"):
        key = f"{modality}_features"
        if key in batch:
            x, mask = batch[key], batch.get(f"{modality}_attention_mask")
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            if mask is not None:
                eps = eps * mask[..., None].to(x.dtype)
            batch[key] = x + noise * _rms(x, mask) * eps
    if "input_ids" in batch:
        embeddings = model.get_input_embeddings()
        with torch.no_grad():
            embeds = embeddings(batch.pop("input_ids"))
        mask = batch.get("attention_mask")
        eps = torch.randn(embeds.shape, generator=generator, dtype=embeds.dtype)
        if mask is not None:
            eps = eps * mask[..., None].to(embeds.dtype)
        batch["inputs_embeds"] = embeds + noise * _rms(embeds, mask) * eps
    return batch


def predict_dataset(
    model,
    encoded,
    collator,
    batch_size: int = 32,
    noise: float = 0.0,
    drop: Sequence[str] = (),
    seed: int = 0,
    progress: bool = True,
    desc: str = "evaluating",
) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, labels) over an encoded split; scores for regression, logits for classification."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(encoded, batch_size=batch_size, shuffle=False, collate_fn=collator)
    preds, labels = [], []
    device = next(model.parameters()).device
    model.eval()
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        if "labels" in batch:
            labels.append(batch.pop("labels").numpy())
        batch = perturb_batch(batch, model, noise=noise, drop=drop, generator=generator)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.inference_mode():
            logits = model(**batch).logits
        preds.append(logits.float().cpu().numpy())
    out = np.concatenate(preds)
    return (out.reshape(-1) if is_regression(model) else out), (np.concatenate(labels) if labels else None)


def score(
    model, predictions: np.ndarray, labels: np.ndarray, binning: str = "mosi", boundary: float = 0.0
) -> dict[str, float]:
    """The ``msa`` metrics of a regressor (Acc-2 / F1 split at ``boundary``), else the classification ones."""
    from ..metrics import load_metric

    if is_regression(model):
        return load_metric("msa", keep_in_memory=True).compute(
            predictions=predictions, references=labels, binning=binning, boundary=boundary
        )
    return load_metric("classification", keep_in_memory=True).compute(
        predictions=predictions.argmax(-1), references=labels
    )


def robustness_rows(
    model,
    encoded,
    collator,
    noise_levels: Iterable[float] = DEFAULT_NOISE,
    drop_modalities: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    binning: str = "mosi",
    progress: bool = True,
    boundary: float = 0.0,
) -> list[dict]:
    """One row per condition: clean / each noise strength / each dropped modality, with all metrics
    (``boundary``: the polarity boundary of Acc-2 / F1 for labels on another scale than [-3, 3])."""
    conditions = [(float(s), ()) for s in noise_levels]
    if 0.0 not in [s for s, _ in conditions]:
        conditions.insert(0, (0.0, ()))
    modalities = model_modalities(model.config)
    if drop_modalities and len(modalities) > 1:
        conditions += [(0.0, (m,)) for m in modalities]
    rows = []
    for sigma, drop in conditions:
        name = f"drop {drop[0]}" if drop else ("clean" if sigma == 0 else f"noise {sigma:g}")
        preds, labels = predict_dataset(
            model, encoded, collator, batch_size, noise=sigma, drop=drop, seed=seed, progress=progress, desc=name
        )
        if labels is None:
            raise ValueError("the evaluation split has no labels; pass --label_column")
        rows.append({"condition": name, "noise": sigma, "dropped": drop[0] if drop else "", **score(model, preds, labels, binning, boundary)})
    return rows


def format_table(rows: list[dict], metrics: Sequence[str] | None = None) -> str:
    """A Markdown table of the rows (metrics as fractions, 4 decimals)."""
    if not rows:
        return ""
    metrics = list(metrics or [k for k in rows[0] if k not in ("condition", "noise", "dropped")])
    lines = ["| condition | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for row in rows:
        values = ["nan" if math.isnan(row[m]) else f"{row[m]:.4f}" for m in metrics]
        lines.append(f"| {row['condition']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def plot_robustness(rows: list[dict], path: str | Path, metrics: Sequence[str] = ("mae", "acc2_has0"), title: str = "") -> Path:
    """PNG of each metric versus noise strength (dropped-modality points drawn as horizontal markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in rows[0]] or [k for k in rows[0] if k not in ("condition", "noise", "dropped")][:2]
    noise_rows = sorted((r for r in rows if not r["dropped"]), key=lambda r: r["noise"])
    drop_rows = [r for r in rows if r["dropped"]]
    # Dropped conditions are told apart by colour and dash in one legend below the panels: labels written at
    # the lines would cover each other whenever two conditions score alike.
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6 + 0.3 * bool(drop_rows)), squeeze=False,
                             layout="constrained")
    dashes = ("--", "-.", ":")
    for ax, metric in zip(axes[0], metrics):
        ax.plot([r["noise"] for r in noise_rows], [r[metric] for r in noise_rows], marker="o", color="#333333",
                label="Gaussian noise")
        for i, r in enumerate(drop_rows):
            ax.axhline(r[metric], linestyle=dashes[i % len(dashes)], linewidth=1.2, color=f"C{i}", label=f"drop {r['dropped']}")
        ax.set_xlabel("noise strength sigma (relative to feature RMS)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_rows(rows: list[dict], output_dir: str | Path, stem: str = "robustness") -> dict[str, Path]:
    """``<stem>.csv``, ``<stem>.json`` and ``<stem>.md`` in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": output_dir / f"{stem}.csv", "json": output_dir / f"{stem}.json", "md": output_dir / f"{stem}.md"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps([{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows], indent=2))
    paths["md"].write_text(format_table(rows) + "\n")
    return paths


def write_results(
    rows: list[dict], output_dir: str | Path, metrics: Sequence[str], title: str, what: str = "--output_dir"
) -> None:
    """``robustness.{csv,json,md,png}`` into ``output_dir``, all at once (staged, then renamed into place),
    replacing only files an earlier evaluate wrote (checked again here: the folder may have changed while
    the model ran); the folder's marker then lists them."""
    output_dir = check_results_dir(output_dir, what)
    output_dir.mkdir(parents=True, exist_ok=True)
    with staged_files(output_dir) as staging:
        write_rows(rows, staging)
        plot_robustness(rows, staging / "robustness.png", metrics=metrics, title=title)
    record_written(output_dir, OUTPUT_MARKER, RESULT_FILES)


# Lists the result files evaluate wrote into a folder; only those are ever replaced by a later run.
OUTPUT_MARKER = ".hf_mmfusion_evaluate"
RESULT_FILES = tuple(f"robustness.{suffix}" for suffix in ("csv", "json", "md", "png"))


def check_results_dir(output_dir: str | Path, what: str = "--output_dir") -> Path:
    """``output_dir`` once results can be written there (it exists as a writable folder or can be created
    in one, and holds no result file that an earlier evaluate did not write); a ``ValueError`` naming
    ``what`` otherwise. Nothing is created."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{what} {output_dir} is a file, not a folder; choose another --output_dir")
    if output_dir.is_dir():
        ours = written_entries(output_dir, OUTPUT_MARKER) or set()
        foreign = [n for n in RESULT_FILES if n not in ours and os.path.lexists(output_dir / n)]
        if foreign:
            raise ValueError(
                f"{what} {output_dir} holds {', '.join(foreign)}, which hf-mmfusion evaluate did not write; it "
                "never writes over them: move them away or choose another --output_dir"
            )
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {output_dir} cannot be created: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"{what} {output_dir} cannot be written ({existing}: {err.strerror}); "
                         "choose another --output_dir") from None
    return output_dir


def check_label_column(model, split, label_column: str) -> None:
    """A ``ValueError`` naming ``label_column`` unless its values are what the model predicts: float scores
    for a regressor, class ids ``0 .. num_labels - 1`` for a classifier."""
    float_labels = is_regression_label(split, label_column)
    dtype = getattr(split.features[label_column], "dtype", type(split.features[label_column]).__name__)
    if is_regression(model):
        if not float_labels:
            floats = [c for c, f in split.features.items() if getattr(f, "dtype", "").startswith("float")
                      and c not in MODALITIES]
            raise ValueError(
                f"--label_column {label_column!r} holds class ids ({dtype}), but the model is a regressor that "
                f"predicts float scores; pass a float label column{f' (this split has {floats})' if floats else ''}"
            )
        return
    if float_labels:
        raise ValueError(
            f"--label_column {label_column!r} holds float values ({dtype}), but the model is a classifier that "
            f"expects class ids 0..{model.config.num_labels - 1}; pass its class-id column"
        )
    classes = num_classes(split, label_column) if len(split) else 0
    if classes > model.config.num_labels or (len(split) and min(split[label_column]) < 0):
        raise ValueError(
            f"--label_column {label_column!r} holds class ids outside 0..{model.config.num_labels - 1}, the "
            f"{model.config.num_labels} classes of the model"
        )


def run_evaluate(args: argparse.Namespace) -> list[dict]:
    bad_noise = [s for s in args.noise or [] if not math.isfinite(s) or s < 0]
    if bad_noise:
        raise ValueError(f"--noise strengths must be finite and non-negative, got {bad_noise}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    workers = getattr(args, "preprocessing_num_workers", None)
    if workers is not None and workers < 1:
        raise ValueError(f"--preprocessing_num_workers must be at least 1, got {workers}")
    what = "--output_dir" if args.output_dir else "the default --output_dir"
    if args.output_dir:
        output_dir = check_results_dir(args.output_dir)
    else:
        output_dir = Path(args.model) / "eval" if Path(args.model).is_dir() else Path("eval")
        check_results_dir(output_dir, what)
    model, processor = load_pretrained(args.model, trust_remote_code=args.trust_remote_code, progress=not args.no_progress)
    check_text_length(model, args.max_text_length)
    synthetic = {}
    if args.dataset == "synthetic":
        # The same rows `hf-mmfusion train` generates by default, so its test split is the one trained for.
        synthetic = DataArguments(
            synthetic_sizes=list(args.synthetic_sizes), synthetic_audio_dim=args.synthetic_audio_dim,
            synthetic_visual_dim=args.synthetic_visual_dim, synthetic_seed=args.synthetic_seed,
            synthetic_modalities=[m for m in MODALITIES if m in model_modalities(model.config)],
        ).synthetic_kwargs()
    raw = load_any_dataset(args.dataset, config_name=args.dataset_config, **synthetic)
    split = raw[resolve_split(raw, args.split, args.dataset)]
    if args.max_samples:
        split = split.select(range(min(args.max_samples, len(split))))
    modalities = list(model_modalities(model.config))
    check_dataset_modalities(modalities, dataset_modalities(split), args.dataset)
    label_column = args.label_column or ("label" if is_regression(model) else "label_class")
    check_label_column(model, split, label_column)
    with model_threads(model, threads):
        encoded = encode_dataset(split, processor, modalities, label_column, args.max_text_length, num_proc=workers)
        # Unmaps the raw rows' Arrow files (see run_training): only the encoded rows are read from here on.
        del raw, split
        gc.collect()
        encoded = read_in_order(encoded)
        rows = robustness_rows(
            model,
            encoded,
            make_collator(processor),
            noise_levels=args.noise or [0.0],
            drop_modalities=not args.no_drop,
            batch_size=args.batch_size,
            seed=args.seed,
            binning=args.binning,
            boundary=getattr(args, "polarity_boundary", 0.0),
            progress=not args.no_progress,
        )
    write_results(
        rows, output_dir, metrics=("mae", "acc2_has0") if is_regression(model) else ("accuracy", "f1_macro"),
        title=f"{model.config.model_type.upper()} on {args.dataset} ({args.split})", what=what,
    )
    print(format_table(rows))
    print(f"wrote {output_dir}/robustness.{{csv,json,md,png}}")
    return rows


