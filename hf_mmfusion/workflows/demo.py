"""The main job: ``hf-mmfusion demo``.

Trains CLCR and SSU on the built-in synthetic dataset, evaluates each on the test split with the
robustness protocol (Gaussian noise, dropped modalities), saves model + processor + model card, reloads
every checkpoint through ``AutoModel``, ``AutoModelForSequenceClassification`` and ``AutoProcessor``,
checks that the reloaded model reproduces the test metrics, and prints one table.

By default the data is the trimodal variant: the label's sign is the product of the text polarity (a
positive or negative word among fillers) and the audio sign, and its size (1 to 3) comes from the visual
stream, so no modality alone predicts it and dropping any one of them at least doubles the error. The text
encoder is a tiny random BERT over the synthetic vocabulary (no download) trained at a tenth of the fusion
layers' learning rate, and SSU uses the token-chain text graph (``text_graph="chain"``): the synthetic
sentences are word lists without a grammatical parse, and no spaCy model is needed.
``--modalities audio visual`` runs the acoustic-visual variant (label = audio sign x visual sign x 2).

The table shows each model's mechanisms at a glance, measured on the test split: CLCR's mean token
participation (the fraction of tokens its budget lets exchange, over modalities and levels) and its mean
level weights; SSU's audio / visual graph density (kept edges over real node pairs) and its learned
thresholds lambda.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

# Dropout off and a larger step than the papers' recipes: the demo must learn in a few epochs on CPU.
DEMO_OVERRIDES = {
    "clcr": "tcn_dropout=0,attention_dropout=0,classifier_dropout=0,exchange_heads=2,tcn_dilations=[1,2,4],intra_pair_segments=4",
    "ssu": "gat_dropout=0,classifier_dropout=0",
}
# Marks an output folder as the demo's and lists what the demo wrote there (see ``outputs``).
OUTPUT_MARKER = ".hf_mmfusion_demo"
RESULTS_FILE = "demo_results.json"
TABLE_METRICS = ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "acc7")
TABLE_LEGEND = """\
mae: mean absolute error of the score (lower is better); corr: Pearson correlation (higher is better);
acc2_has0 / f1_has0: negative vs non-negative accuracy / weighted F1; acc2_non0: the same without zero
labels; acc7: seven-class accuracy (accuracies and F1 higher is better, as fractions);
mae_noise<s>: MAE with Gaussian noise of <s> x the feature RMS on every modality; mae_drop_<m>: MAE with
modality <m> removed (both lower is better; near chance means the model needs that modality);
train_seconds: wall time of training.
CLCR mechanisms: participation = share of tokens its budget lets exchange (over modalities and levels),
levels = mean level weights (shallow / mid / deep). SSU mechanisms: density = kept audio / visual edges over
real node pairs, lambda = learned threshold of each graph (tau = mu + lambda sigma)."""


@dataclass
class DemoSettings:
    output_dir: str = "hf-mmfusion-demo"
    models: tuple[str, ...] = ("clcr", "ssu")
    modalities: tuple[str, ...] = ("text", "audio", "visual")
    # The three-way interaction needs a few hundred optimisation steps: 1024 samples for 10 epochs at batch 16.
    sizes: tuple[int, int, int] = (1024, 256, 256)
    epochs: float = 10.0
    hidden_size: int = 32
    batch_size: int = 16
    learning_rate: float = 3e-3
    noise: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    audio_frames: tuple[int, int] = (6, 16)
    visual_frames: tuple[int, int] = (5, 12)
    seed: int = 0
    progress: bool = True
    overrides: dict[str, str] = field(default_factory=lambda: dict(DEMO_OVERRIDES))


def _training_args(settings: DemoSettings, model_type: str):
    from transformers import TrainingArguments

    from .training.arguments import training_argument_defaults

    values = training_argument_defaults(world_size=1)
    values.update(
        output_dir=str(Path(settings.output_dir) / model_type),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=settings.learning_rate,
        warmup_steps=10,
        # The synthetic label is a product of two signs: training sits on a plateau until both features
        # form, and a constant step with loose clipping leaves it sooner than a decaying one.
        lr_scheduler_type="constant_with_warmup",
        max_grad_norm=5.0,
        weight_decay=0.0,
        logging_steps=10,
        save_total_limit=1,
        seed=settings.seed,
        disable_tqdm=not settings.progress,
        use_cpu=True,
    )
    return TrainingArguments(**values)


def _data_args(settings: DemoSettings):
    from ..data.datasets import DataArguments

    return DataArguments(
        dataset="synthetic",
        synthetic_modalities=list(settings.modalities),
        synthetic_sizes=list(settings.sizes),
        synthetic_audio_frames=list(settings.audio_frames),
        synthetic_visual_frames=list(settings.visual_frames),
        # Each demo run replaces its previous one: the model folders are the demo's own (see `claim_demo_output`).
        overwrite_output_dir=True,
    )


def _test_split(settings: DemoSettings):
    from ..data.datasets import load_any_dataset

    return load_any_dataset("synthetic", **_data_args(settings).synthetic_kwargs())["test"]


def reload_and_check(path: Path, settings: DemoSettings, expected: dict[str, float], binning: str = "mosi") -> dict:
    """Reload through the Auto classes, re-score the test split, and compare with the training run."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor

    from ..data.datasets import encode_dataset, make_collator
    from .evaluation import predict_dataset, score

    base = AutoModel.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    encoded = encode_dataset(_test_split(settings), processor, model.config.modalities, "label", 64)
    preds, labels = predict_dataset(model, encoded, make_collator(processor), progress=False)
    metrics = score(model, preds, labels, binning)
    for key in ("mae", "acc2_has0"):
        if not math.isclose(metrics[key], expected[key], rel_tol=1e-4, abs_tol=1e-5):
            raise RuntimeError(f"reloaded {path} gives {key}={metrics[key]}, the trained model gave {expected[key]}")
    return {"base_model": type(base).__name__, "head_model": type(model).__name__, "processor": type(processor).__name__}


def mechanism_summary(model, encoded, collator, batch_size: int = 64) -> dict[str, str]:
    """What the model's own mechanisms do on a split: CLCR's token participation and level weights, SSU's graph
    density and learned thresholds. Returns table cells (strings)."""
    import torch
    from torch.utils.data import DataLoader

    modalities = list(model.config.modalities)
    participation, levels, density = [], [], {m: [] for m in modalities if m != "text"}
    lam = None
    model.eval()
    for batch in DataLoader(encoded, batch_size=batch_size, shuffle=False, collate_fn=collator):
        batch.pop("labels", None)
        with torch.inference_mode():
            if model.config.model_type == "clcr":
                out = model(**batch)
                participation.append(out.participation_ratios.mean((1, 2)))
                levels.append(out.level_weights)
            else:
                out = model(**batch, output_graphs=True)
                lam = out.threshold_lambda
                for m in density:
                    n = batch[f"{m}_attention_mask"].sum(1).float()
                    edges = (out[f"adjacency_{m}"] > 0).sum((1, 2)).float()
                    density[m].append(edges / (n * (n - 1)).clamp_min(1.0))
    if model.config.model_type == "clcr":
        alpha = torch.cat(levels).mean(0)
        return {
            "participation": f"{torch.cat(participation).mean():.2f}",
            "levels": "/".join(f"{a:.2f}" for a in alpha.tolist()),
        }
    return {
        "density": "/".join(f"{torch.cat(v).mean():.2f}" for v in density.values()),
        "lambda": "/".join(f"{v:.2f}" for v in lam.tolist()),
    }


def _stage_progress(stages, model_type: str):
    """A Trainer callback that shows the step and the latest loss on the demo's single progress bar."""
    from transformers import TrainerCallback

    class StageProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                stages.set_postfix_str(f"training {model_type}: step {state.global_step}/{state.max_steps}, "
                                       f"loss {float(logs['loss']):.3f}")

    return StageProgress()


def claim_demo_output(settings: DemoSettings) -> Path:
    """The demo's output folder, checked and marked before any training: it must be new, empty, or an earlier
    demo output whose model folders the demo wrote itself; anything else is refused with a ``ValueError``."""
    from ..utils.outputs import check_output_dir, claim_output_dir, written_entries

    output = check_output_dir(settings.output_dir, OUTPUT_MARKER, "demo")
    ours = written_entries(output, OUTPUT_MARKER) or set()
    for name in settings.models:
        if (output / name).exists() and name not in ours:
            raise ValueError(
                f"--output_dir {output} holds a folder {name!r} that hf-mmfusion demo did not write; it never "
                "replaces it: choose an empty or new folder"
            )
    return claim_output_dir(output, OUTPUT_MARKER, [*settings.models, RESULTS_FILE])


def run_demo(settings: DemoSettings) -> dict[str, dict]:
    """Train, evaluate, save, reload each model; returns {model_type: summary}."""
    from ..utils.quiet import library_output_silenced

    with library_output_silenced():
        return _run_demo(settings)


def _run_demo(settings: DemoSettings) -> dict[str, dict]:
    import torch
    from tqdm.auto import tqdm

    from ..data.datasets import encode_dataset, make_collator
    from ..hub import build_model_card
    from ..utils.outputs import record_written
    from .evaluation import plot_robustness, robustness_rows, write_rows
    from .training.arguments import ModelArguments
    from .training.output_dir import RUN_MARKER
    from .training.run import run_training

    claim_demo_output(settings)
    results: dict[str, dict] = {}
    stages = tqdm(total=3 * len(settings.models), desc="demo", disable=not settings.progress, position=0)
    for model_type in settings.models:
        stages.set_postfix_str(f"training {model_type}")
        start = time.perf_counter()
        outcome = run_training(
            ModelArguments(
                model_type=model_type,
                hidden_size=settings.hidden_size,
                config_overrides=settings.overrides.get(model_type),
                # A transformer text encoder does not train at the fusion layers' step size.
                text_learning_rate=settings.learning_rate / 10,
                threads=torch.get_num_threads(),  # what the demo's --threads set
            ),
            _data_args(settings),
            _training_args(settings, model_type),
            callbacks=[_stage_progress(stages, model_type)] if settings.progress else None,
            console_logs=False,
        )
        train_seconds = time.perf_counter() - start
        stages.update()

        stages.set_postfix_str(f"robustness {model_type}")
        encoded = encode_dataset(_test_split(settings), outcome.processor, outcome.model.config.modalities, "label", 64)
        rows = robustness_rows(
            outcome.model.eval(), encoded, make_collator(outcome.processor), noise_levels=settings.noise,
            seed=settings.seed, progress=False,
        )
        eval_dir = outcome.output_dir / "eval"
        # Part of the run's folder from now on, so that the next demo run may replace it.
        record_written(outcome.output_dir, RUN_MARKER, [eval_dir.name, "README.md"])
        write_rows(rows, eval_dir)
        plot_robustness(rows, eval_dir / "robustness.png", title=f"{model_type.upper()} on synthetic (test)")
        clean = rows[0]
        card = build_model_card(
            outcome.model,
            {k: clean[k] for k in clean if k not in ("condition", "noise", "dropped")},
            dataset_name=f"hf_mmfusion synthetic ({', '.join(settings.modalities)})",
            dataset_description=(
                "The built-in synthetic dataset (`hf_mmfusion.data.make_synthetic_dataset`) with modalities "
                f"{', '.join(settings.modalities)}: {settings.sizes[0]} / {settings.sizes[1]} / {settings.sizes[2]} "
                "train / validation / test samples. The label's sign is the product of the signs two modalities "
                "carry, so no single modality predicts it."
            ),
            training_args=outcome.trainer.args,
            repo_id=f"<user>/{model_type}-synthetic-demo",
            robustness={r["condition"]: r["mae"] for r in rows},
        )
        card.save(outcome.output_dir / "README.md")
        stages.update()

        stages.set_postfix_str(f"reloading {model_type}")
        loaded = reload_and_check(outcome.output_dir, settings, clean)
        stages.update()
        mechanisms = mechanism_summary(outcome.model, encoded, make_collator(outcome.processor))
        noisiest = max((r for r in rows if not r["dropped"]), key=lambda r: r["noise"])
        results[model_type] = {
            **{k: clean[k] for k in TABLE_METRICS},
            f"mae_noise{noisiest['noise']:g}": noisiest["mae"],
            **{f"mae_drop_{r['dropped']}": r["mae"] for r in rows if r["dropped"]},
            "mechanisms": mechanisms,
            "train_seconds": train_seconds,
            "path": str(outcome.output_dir),
            **loaded,
        }
    stages.close()
    return results


def format_results(results: dict[str, dict]) -> str:
    """The metrics table (one row per model), then one line per model with its mechanisms, then the legend."""
    skip = ("path", "base_model", "head_model", "processor", "mechanisms")
    columns = [k for k in next(iter(results.values())) if k not in skip]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        cells = []
        for key in columns:
            value = row[key]
            cells.append(f"{value:.1f}" if key == "train_seconds" else "nan" if math.isnan(value) else f"{value:.4f}")
        lines.append(f"| {name.upper()} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, row in results.items():
        if row.get("mechanisms"):
            lines.append(f"{name.upper()} mechanisms (test): " + ", ".join(f"{k} {v}" for k, v in row["mechanisms"].items()))
    return "\n".join(lines)


