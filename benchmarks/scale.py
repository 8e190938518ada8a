"""How each cost grows with the data: CMU-MOSEI-shaped MMSA pickles of several sizes, end to end.

    python benchmarks/scale.py [--sizes 1000 4000] [--max_steps 10] [--batch_size 16]
    python benchmarks/scale.py --sizes 1000 4000 16000      # the full table (16k: a 4.4 GB pickle)

For each size N the benchmark writes a seeded synthetic MMSA pickle shaped like unaligned CMU-MOSEI
(GloVe text 50 x 300, audio 500 x 74 and visual 500 x 35 frames with 100-500 real ones, 70/10/20 splits)
into a temporary folder it removes afterwards, and measures, each in a child process of its own whose peak
RSS (``VmHWM``: its own memory, resident at its peak, memory-mapped files included) is that run's:

- ``convert mmsa``: wall time and peak RSS (the pickle's size beside it);
- ``train``: a small CLCR for ``--max_steps`` steps (the same at every size): training samples a second
  (Trainer's ``train_samples_per_second``), peak RSS of the whole command, preprocessing rows a second
  (``encode_dataset`` over the train / validation / test splits) and the share of the training loop spent
  waiting for data (time inside the DataLoader iterator's ``__next__`` against ``train_runtime``);
- ``evaluate`` (the clean test condition only) of the first ``--eval_samples`` test samples, the same
  number at every size: samples a second end to end (loading the dataset and the model, preprocessing,
  inference) and peak RSS.

The last columns fit a growth exponent per cost, the slope of log(cost) on log(N) by least squares: 1.0 is
linear, 0 flat (for rates, 0 is a constant rate); "at MOSEI" extrapolates the fit to CMU-MOSEI's 22,856
segments. Times come from a shared machine; the exponents and RSS figures are the portable part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

MOSEI_SEGMENTS = 22856
SPLIT_SHARES = (("train", 0.7), ("valid", 0.1), ("test", 0.2))
TEXT_SHAPE, AUDIO_SHAPE, VISUAL_SHAPE = (50, 300), (500, 74), (500, 35)
REAL_FRAMES = (100, 500)
SMALL_CLCR = [
    "--model_type", "clcr", "--hidden_size", "32", "--tiny_text_hidden_size", "32",
    "--config_overrides", "exchange_heads=2,tcn_dilations=[1,2,4],intra_pair_segments=4",
]


def write_mosei_pickle(path: Path, segments: int, seed: int = 0) -> None:
    """A seeded MMSA ``unaligned`` pickle of ``segments`` MOSEI-shaped segments (frames past a segment's
    length are zero padding, as in MMSA's files)."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, share in SPLIT_SHARES:
        n = max(1, int(round(segments * share)))
        audio_lengths = rng.integers(REAL_FRAMES[0], REAL_FRAMES[1] + 1, n)
        vision_lengths = rng.integers(REAL_FRAMES[0], REAL_FRAMES[1] + 1, n)
        audio = rng.standard_normal((n, *AUDIO_SHAPE), dtype=np.float32)
        vision = rng.standard_normal((n, *VISUAL_SHAPE), dtype=np.float32)
        for i in range(n):
            audio[i, audio_lengths[i]:] = 0
            vision[i, vision_lengths[i]:] = 0
        words = rng.integers(3, 30, n)
        data[split] = {
            "id": np.array([f"{split}{i // 8}$_${i % 8}" for i in range(n)], dtype=object),
            "raw_text": np.array([" ".join(["word"] * int(w)) for w in words], dtype=object),
            "text": rng.standard_normal((n, *TEXT_SHAPE), dtype=np.float32),
            "audio": audio,
            "vision": vision,
            "audio_lengths": audio_lengths.tolist(),
            "vision_lengths": vision_lengths.tolist(),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
        }
        del audio, vision
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)


def own_peak_rss_kib() -> int:
    """Peak RSS of this process's own memory. VmHWM starts afresh at exec; ``ru_maxrss`` (of ``getrusage`` or
    ``wait4``) would count the parent's memory too, which a child shares until it execs: after writing a
    pickle that is several GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("error: this benchmark needs Linux's /proc/self/status")


def run_child(argv: list[str], work: Path) -> tuple[float, float, dict]:
    """(wall seconds, peak RSS in GB, what the child recorded) of ``hf-mmfusion argv`` run by
    :func:`child` in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    record = work / "child.json"
    record.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(record), "--", *argv], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output = proc.stdout.read().decode(errors="replace")
    except BaseException:
        proc.kill()
        raise
    proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode or not record.exists():
        raise SystemExit(f"error: hf-mmfusion {' '.join(argv[:3])} ... failed ({proc.returncode}):\n{output[-3000:]}")
    recorded = json.loads(record.read_text())
    return wall, recorded["peak_rss_kib"] / 2**20, recorded


def child(record_path: str, argv: list[str]) -> None:
    """Run ``hf-mmfusion argv`` in this process; for ``train``, time preprocessing and the DataLoader too."""
    from hf_mmfusion.commands import main

    timings = {}
    if argv[0] == "train":
        timings = time_training()
    code = main(argv)
    timings.pop("training", None)
    Path(record_path).write_text(json.dumps({**timings, "peak_rss_kib": own_peak_rss_kib()}))
    sys.exit(code)


def time_training() -> dict:
    """Counters that fill while ``hf-mmfusion train`` runs: rows and seconds of ``encode_dataset`` and the
    seconds spent inside the DataLoader iterator's ``__next__`` during ``Trainer.train``."""
    import torch.utils.data.dataloader as dataloader

    from hf_mmfusion.workflows.training import run, trainer

    timings = {"preprocess_rows": 0, "preprocess_s": 0.0, "data_wait_s": 0.0, "training": False}
    encode = run.encode_dataset

    def timed_encode(split, *args, **kwargs):
        start = time.perf_counter()
        encoded = encode(split, *args, **kwargs)
        timings["preprocess_s"] += time.perf_counter() - start
        timings["preprocess_rows"] += len(split)
        return encoded

    next_batch = dataloader._BaseDataLoaderIter.__next__

    def timed_next(self):
        start = time.perf_counter()
        try:
            return next_batch(self)
        finally:
            if timings["training"]:
                timings["data_wait_s"] += time.perf_counter() - start

    train = trainer.MMFusionTrainer.train

    def timed_train(self, *args, **kwargs):
        timings["training"] = True
        try:
            return train(self, *args, **kwargs)
        finally:
            timings["training"] = False

    run.encode_dataset = timed_encode
    dataloader._BaseDataLoaderIter.__next__ = timed_next
    trainer.MMFusionTrainer.train = timed_train
    return timings


def measure(segments: int, work: Path, args) -> dict:
    pickle_path = work / f"mosei_{segments}.pkl"
    write_mosei_pickle(pickle_path, segments, seed=args.seed)
    row = {"segments": segments, "pickle_gb": pickle_path.stat().st_size / 1e9}
    converted = work / f"converted_{segments}"
    wall, rss, _ = run_child(["convert", "mmsa", str(pickle_path), "-o", str(converted)], work)
    row.update(convert_s=wall, convert_rss_gb=rss)
    pickle_path.unlink()  # only the converted copy is needed from here on

    model_dir = work / f"model_{segments}"
    train_argv = [
        "train", *SMALL_CLCR, "--dataset", str(converted), "--output_dir", str(model_dir), "--max_steps", str(args.max_steps),
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", str(args.batch_size),
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", str(args.max_steps),
        "--dataloader_num_workers", "0", "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none",
        "--seed", str(args.seed),
    ]
    _, rss, timings = run_child(train_argv, work)
    results = json.loads((model_dir / "all_results.json").read_text())
    row.update(
        preprocess_rows_s=timings["preprocess_rows"] / timings["preprocess_s"],
        train_samples_s=results["train_samples_per_second"],
        train_rss_gb=rss,
        data_wait_share=timings["data_wait_s"] / results["train_runtime"],
    )

    test_rows = min(args.eval_samples, len(__import__("datasets").load_from_disk(str(converted))["test"]))
    wall, rss, _ = run_child([
        "evaluate", str(model_dir), "--dataset", str(converted), "--split", "test", "--max_samples", str(test_rows),
        "--noise", "0", "--no_drop", "--batch_size", str(args.batch_size), "--no_progress",
        "--output_dir", str(work / f"eval_{segments}"),
    ], work)
    row.update(eval_samples_s=test_rows / wall, eval_rss_gb=rss)
    shutil.rmtree(converted)
    shutil.rmtree(model_dir)
    return row


COLUMNS = (
    ("pickle_gb", "pickle GB", "{:.2f}"),
    ("convert_s", "convert s", "{:.1f}"),
    ("convert_rss_gb", "convert peak RSS GB", "{:.2f}"),
    ("preprocess_rows_s", "preprocess rows/s", "{:.0f}"),
    ("train_samples_s", "train samples/s", "{:.1f}"),
    ("train_rss_gb", "train peak RSS GB", "{:.2f}"),
    ("data_wait_share", "train data wait share", "{:.1%}"),
    ("eval_samples_s", "eval samples/s", "{:.1f}"),
    ("eval_rss_gb", "eval peak RSS GB", "{:.2f}"),
)


def growth(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(exponent k, value at MOSEI's size) of the least-squares fit log(value) = k log(N) + c."""
    if len(sizes) < 2 or min(values) <= 0:
        return math.nan, math.nan
    k, c = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(k), float(math.exp(k * math.log(MOSEI_SEGMENTS) + c))


def print_table(rows: list[dict]) -> None:
    sizes = [row["segments"] for row in rows]
    head = ["cost"] + [f"{n:,}" for n in sizes] + ["exponent", f"at MOSEI ({MOSEI_SEGMENTS:,})"]
    lines = []
    for key, name, fmt in COLUMNS:
        values = [row[key] for row in rows]
        k, mosei = growth(sizes, values)
        if key == "data_wait_share":
            mosei = min(mosei, 1.0)  # a share, whatever the fit says
        lines.append([name] + [fmt.format(v) for v in values]
                     + ["n/a" if math.isnan(k) else f"{k:.2f}", "n/a" if math.isnan(mosei) else fmt.format(mosei)])
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


def main() -> None:
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1], sys.argv[sys.argv.index("--") + 1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000],
                        help="segments per synthetic pickle (the full table: --sizes 1000 4000 16000)")
    parser.add_argument("--max_steps", type=int, default=10, help="training steps at every size")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--eval_samples", type=int, default=100, help="test samples evaluated at every size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args()
    if min(args.sizes) < 10:
        parser.error("--sizes must be at least 10 segments")
    # A stopped run still removes its pickles (GBs): SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    with tempfile.TemporaryDirectory(prefix="hf-mmfusion-scale-") as work:
        for segments in sorted(set(args.sizes)):
            rows.append(measure(segments, Path(work), args))
            print(f"measured {segments:,} segments: {json.dumps({k: round(v, 4) for k, v in rows[-1].items()})}", flush=True)
    print(f"\nsmall CLCR, {args.max_steps} training steps of {args.batch_size} and {args.eval_samples} evaluated "
          "test samples at every size; "
          f"exponent: slope of log(cost) on log(segments) (1.0 linear, 0 flat)\n")
    print_table(rows)
    if args.sizes == parser.get_default("sizes"):
        print("\nfull table: python benchmarks/scale.py --sizes 1000 4000 16000")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
