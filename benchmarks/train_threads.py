"""Training-step time of the default small models (``hf-mmfusion train`` on the synthetic data) at 1
versus several torch intra-op threads, in the same process.

Builds the model and batches the quick check uses (CLCR and SSU, hidden size 32, batch 16, the synthetic
acoustic-visual data), then times forward + backward + AdamW steps, alternating the thread counts so
both see the same load. Prints the median step time per setting and the ratio to one thread.

    python benchmarks/train_threads.py                 # 1 vs 2 threads, 30 timed steps each
    python benchmarks/train_threads.py --threads 1 2 4 --steps 10

The figures decide ``train``'s default of one thread for models under
``hf_mmfusion.utils.cpu_threads.SMALL_MODEL_PARAMETERS`` parameters. On a shared machine compare the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def make_batches(processor, data, batch_size: int):
    from hf_mmfusion.data.collator import MMFusionDataCollator
    from hf_mmfusion.data.datasets import encode_dataset

    encoded = encode_dataset(data, processor, ("audio", "visual"), "label", 64)
    collate = MMFusionDataCollator(processor)
    rows = [encoded[i] for i in range(len(encoded))]
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows) - batch_size + 1, batch_size)]


def build(model_type: str, hidden_size: int):
    from hf_mmfusion.data.datasets import DataArguments, fit_feature_normalization, load_any_dataset
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model, build_processor

    data_args = DataArguments()
    data = load_any_dataset("synthetic", **data_args.synthetic_kwargs())["train"]
    args = ModelArguments(model_type=model_type, hidden_size=hidden_size)
    dims = (data_args.synthetic_audio_dim, data_args.synthetic_visual_dim)
    processor = build_processor(args, ("audio", "visual"), *dims, 64)
    fit_feature_normalization(processor, data)
    torch.manual_seed(0)
    model = build_model(args, ("audio", "visual"), *dims, 1)
    return model.train(), processor, data


def time_steps(model, optimizer, batches, steps: int) -> list[float]:
    out = []
    for i in range(steps):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["clcr", "ssu"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per thread setting")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the thread settings")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--hidden_size", type=int, default=32)
    args = parser.parse_args()

    from hf_mmfusion import retain_freed_memory

    retain_freed_memory()
    print(f"| model | parameters | {' | '.join(f'{t} thread(s), ms/step' for t in args.threads)} | "
          f"{' | '.join(f'{t} vs 1' for t in args.threads if t != 1)} |")
    print("|---" * (2 + len(args.threads) + sum(t != 1 for t in args.threads)) + "|")
    for model_type in args.models:
        model, processor, data = build(model_type, args.hidden_size)
        batches = make_batches(processor, data, args.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        times: dict[int, list[float]] = {t: [] for t in args.threads}
        for t in args.threads:  # warm-up at every setting
            torch.set_num_threads(t)
            time_steps(model, optimizer, batches, 3)
        per_round = max(1, args.steps // args.rounds)
        for _ in range(args.rounds):
            for t in args.threads:
                torch.set_num_threads(t)
                times[t] += time_steps(model, optimizer, batches, per_round)
        medians = {t: statistics.median(v) * 1000 for t, v in times.items()}
        base = medians.get(1, next(iter(medians.values())))
        parameters = sum(p.numel() for p in model.parameters())
        cells = " | ".join(f"{medians[t]:.1f}" for t in args.threads)
        ratios = " | ".join(f"{medians[t] / base:.2f}x" for t in args.threads if t != 1)
        print(f"| {model_type} | {parameters / 1e6:.2f}M | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
