"""Peak memory of the commands against the dataset's size: train, evaluate and predict on CMU-MOSEI-shaped data.

    python benchmarks/dataset_memory.py [--sizes 1000 4000] [--commands train evaluate predict] [--workdir /tmp/x]

For each size a seeded MOSEI-shaped ``DatasetDict`` (text of 20-50 words, audio ``[T, 74]`` and visual
``[T, 35]`` frames with T in 100-500, 70/10/20 splits) is written with ``save_to_disk`` under ``--workdir``;
then each command runs in a child process and its peak RSS (``ru_maxrss`` of the child) is printed, with the
ratio of every size to the smallest. ``train`` is ``--max_steps 10`` followed by its validation and test
evaluation; ``evaluate`` scores the test split clean (no noise levels, no dropped modality); ``predict`` scores
the test rows written as records (``.npy`` frame files). The model is CLCR of width 32 with the tiny random
text encoder, so the numbers measure the data path rather than the model. Everything under ``--workdir``
is removed at the end unless ``--keep`` (then the data and records are reused by the next run); runs on the
same ``--workdir`` may run side by side (``--package DIR`` measures another copy of the package, a baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AUDIO_DIM, VISUAL_DIM = 74, 35
WORDS = "the movie was really quite good bad and it story actor plot i think this that very scene music".split()


def mosei_rows(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(20, 51)))
        yield {
            "id": f"row{i}",
            "text": " ".join(words),
            "audio": rng.standard_normal((int(rng.integers(100, 501)), AUDIO_DIM), dtype=np.float32),
            "visual": rng.standard_normal((int(rng.integers(100, 501)), VISUAL_DIM), dtype=np.float32),
            "label": float(np.clip(rng.normal(0, 1.5), -3, 3)),
        }


def build(size: int, folder: Path) -> Path:
    from hf_mmfusion.data.schema import build_dataset_dict, canonical_features

    features = canonical_features(text=True, audio_dim=AUDIO_DIM, visual_dim=VISUAL_DIM)
    counts = {"train": size * 7 // 10, "validation": size // 10}
    counts["test"] = size - counts["train"] - counts["validation"]
    scratch = folder / f"scratch-{size}"
    splits = {name: (lambda n=n, s=k: mosei_rows(n, seed=1000 * size + s)) for k, (name, n) in enumerate(counts.items())}
    out = folder / f"mosei-{size}"
    build_dataset_dict(splits, features, scratch).save_to_disk(out)
    shutil.rmtree(scratch)
    return out


def write_records(dataset_dir: Path, folder: Path) -> Path:
    """The test split as ``predict`` records: text in the JSONL file, frames as ``.npy`` files beside it."""
    from datasets import load_from_disk

    test = load_from_disk(str(dataset_dir))["test"].with_format("numpy")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "records.jsonl").open("w") as f:
        for row in test:
            rid = str(row["id"])
            np.save(folder / f"{rid}-a.npy", row["audio"])
            np.save(folder / f"{rid}-v.npy", row["visual"])
            f.write(json.dumps({"id": rid, "text": str(row["text"]), "audio": f"{rid}-a.npy", "visual": f"{rid}-v.npy"}) + "\n")
    return folder / "records.jsonl"


def peak_rss(argv: list[str], env: dict, scratch: Path) -> tuple[float, float]:
    """(peak RSS in GB, seconds) of ``hf-mmfusion <argv>`` run under ``/usr/bin/time``.

    Not ``RUSAGE_CHILDREN`` of this process: Linux carries a process's peak across ``exec``, so a child
    forked from this (larger) process would report this process's size."""
    report = scratch / "time.txt"
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-c",
         "import sys; from hf_mmfusion.commands import main; sys.exit(main(sys.argv[1:]))", *argv],
        env=env, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return int(report.read_text().split()[-1]) / 1024**2, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--commands", nargs="+", default=["train", "evaluate", "predict"])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--package", default=None, help="folder of another hf_mmfusion to measure (a baseline)")
    parser.add_argument("--extra", default="", help="extra train flags, e.g. '--preprocessing_num_workers 2'")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hf_mmfusion_memory_"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Data is shared by runs on the same --workdir; models, outputs and a fresh preprocessing cache (each run
    # measures the work, not a reuse of an earlier run's) are this run's.
    scratch = workdir / f"run-{os.getpid()}"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(args.package or REPO), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(scratch / "cache")}
    results: dict[str, dict[int, tuple[float, float]]] = {c: {} for c in args.commands}
    try:
        for size in args.sizes:
            data = workdir / f"mosei-{size}"
            if not data.exists():
                build(size, workdir)
            model_dir = scratch / f"model-{size}"
            train = [
                "train", "--dataset", str(data), "--output_dir", str(model_dir), "--overwrite_output_dir",
                "--max_steps", "10", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
                "--hidden_size", "32", "--eval_strategy", "steps", "--eval_steps", "10", "--save_strategy", "no",
                "--load_best_model_at_end", "false", "--logging_steps", "5", "--disable_tqdm", "true",
                "--use_cpu", "true", "--max_text_length", "64", *args.extra.split(),
            ]
            if "train" in results or not model_dir.exists():
                gb, sec = peak_rss(train, env, scratch)
                if "train" in results:
                    results["train"][size] = (gb, sec)
            if "evaluate" in results:
                out = scratch / f"eval-{size}"
                results["evaluate"][size] = peak_rss(
                    ["evaluate", str(model_dir), "--dataset", str(data), "--split", "test", "--noise", "0", "--no_drop",
                     "--output_dir", str(out), "--no_progress"], env, scratch)
            if "predict" in results:
                records = workdir / f"records-{size}" / "records.jsonl"
                if not records.exists():
                    write_records(data, records.parent)
                results["predict"][size] = peak_rss(
                    ["predict", str(model_dir), "--inputs", str(records), "--output", str(scratch / f"pred-{size}.jsonl"),
                     "--batch_size", "32", "--no_progress"], env, scratch)
            print(f"size {size}: " + ", ".join(f"{c} {r[size][0]:.2f} GB ({r[size][1]:.0f} s)" for c, r in results.items()), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    smallest = min(args.sizes)
    print("\n| command | " + " | ".join(f"{s} rows: peak RSS" for s in args.sizes) + f" | ratio to {smallest} |")
    print("|---" * (len(args.sizes) + 2) + "|")
    for command, rows in results.items():
        cells = " | ".join(f"{rows[s][0]:.2f} GB" for s in args.sizes)
        ratios = ", ".join(f"{rows[s][0] / rows[smallest][0]:.2f}x" for s in args.sizes if s != smallest)
        print(f"| {command} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
