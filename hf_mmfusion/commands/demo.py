"""``hf-mmfusion demo``: CLCR and SSU trained on the built-in synthetic data, evaluated, saved and reloaded."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..utils.cpu_memory import retain_freed_memory
from ..utils.json_values import finite_or_none
from ..workflows import demo
from ..workflows.demo import RESULTS_FILE, TABLE_LEGEND, DemoSettings, format_results, run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-mmfusion demo", description=demo.__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=DemoSettings.output_dir)
    parser.add_argument("--models", nargs="+", default=list(DemoSettings.models), choices=("clcr", "ssu"))
    parser.add_argument(
        "--modalities", nargs="+", default=list(DemoSettings.modalities), choices=("text", "audio", "visual"),
        help="modalities of the synthetic data (default: all three)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for these sizes)")
    parser.add_argument("--sizes", type=int, nargs=3, default=list(DemoSettings.sizes), help="train/validation/test")
    parser.add_argument("--epochs", type=float, default=DemoSettings.epochs)
    parser.add_argument("--hidden_size", type=int, default=DemoSettings.hidden_size)
    parser.add_argument("--batch_size", type=int, default=DemoSettings.batch_size)
    parser.add_argument("--learning_rate", type=float, default=DemoSettings.learning_rate)
    parser.add_argument("--noise", type=float, nargs="+", default=list(DemoSettings.noise))
    parser.add_argument("--audio_frames", type=int, nargs=2, default=list(DemoSettings.audio_frames))
    parser.add_argument("--visual_frames", type=int, nargs=2, default=list(DemoSettings.visual_frames))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    retain_freed_memory()

    # The models are small: a second intra-op thread gains little and loses a lot on a busy machine.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    start = time.perf_counter()
    try:
        results = run_demo(
            DemoSettings(
                output_dir=args.output_dir, models=tuple(args.models), modalities=tuple(args.modalities),
                sizes=tuple(args.sizes), epochs=args.epochs, hidden_size=args.hidden_size,
                batch_size=args.batch_size, learning_rate=args.learning_rate, noise=tuple(args.noise),
                audio_frames=tuple(args.audio_frames), visual_frames=tuple(args.visual_frames), seed=args.seed,
                progress=not args.no_progress,
            )
        )
    finally:
        torch.set_num_threads(previous_threads)
    print()
    print(format_results(results))
    print(TABLE_LEGEND)
    print(f"\nmodels, processors, cards and robustness plots: {Path(args.output_dir).resolve()}")
    reloaded = ", ".join(f"{name}: {row['head_model']}" for name, row in results.items())
    print(f"reloaded through AutoModel / AutoModelForSequenceClassification / AutoProcessor: {reloaded}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    Path(args.output_dir, RESULTS_FILE).write_text(
        json.dumps(finite_or_none(results), indent=2)
    )
    return 0

