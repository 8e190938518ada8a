"""Training throughput, peak GPU memory and model FLOPs utilisation of CLCR and SSU against a plain BERT regressor.

Every model has the same text backbone (BERT-base sized ``BertConfig``, random weights, nothing downloaded) and
trains on MOSEI-shaped batches (text 50 tokens, audio 500 x 74, visual 500 x 35, ragged masks) with AdamW. For
each batch size and mode (fp32, bf16 autocast, bf16 autocast + ``torch.compile``) it runs a few warm-up steps,
then times the others, and prints samples a second, peak memory, MFU and the ratios to the baseline
(``AutoModelForSequenceClassification`` of the same ``BertConfig``, regression) measured in the same run.

FLOPs of one training step (forward + backward) are counted once per model and batch size with
``torch.utils.flop_counter.FlopCounterMode`` in fp32 eager mode (the arithmetic is the same in every mode;
ops without a FLOP formula, such as the Cayley solve of CLCR's orthogonal bank, are not counted). MFU divides
the achieved FLOP rate by the device's peak: dense bf16 tensor-core peak for the bf16 modes, fp32 peak for fp32
(from a table of known GPUs by name; ``--peak_tflops_bf16`` / ``--peak_tflops_fp32`` override it).

    python benchmarks/gpu.py                                 # on a CUDA machine: batch 32 and 64, all modes
    python benchmarks/gpu.py --device cpu --tiny             # smoke run of the same code on CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from hf_mmfusion import CLCRConfig, CLCRForSequenceClassification, SSUConfig, SSUForSequenceClassification

# Dense peak TFLOP/s (bf16 tensor cores, fp32 without TF32) of the SXM / PCIe parts, matched by name.
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
}
MODES = ("fp32", "bf16", "bf16+compile")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and lengths: a smoke run, not a measurement")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--models", nargs="+", choices=("baseline", "clcr", "ssu"), default=["baseline", "clcr", "ssu"])
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--compile_backend", default="inductor", help="torch.compile backend (eager / aot_eager to debug)")
    parser.add_argument("--peak_tflops_bf16", type=float, help="device peak bf16 TFLOP/s (default: from the GPU name)")
    parser.add_argument("--peak_tflops_fp32", type=float, help="device peak fp32 TFLOP/s (default: from the GPU name)")
    args = parser.parse_args(argv)
    if args.device not in ("cuda", "cpu"):
        parser.exit(2, f"error: --device must be cuda or cpu, got {args.device!r}\n")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "error: no CUDA device available; this benchmark needs a GPU (--device cpu --tiny is a smoke run)\n")
    if min(args.batch_sizes) < 1 or args.steps < 1 or args.warmup < 0:
        parser.exit(2, "error: --batch_sizes and --steps must be positive, --warmup not negative\n")
    return args


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(hidden=32, layers=2, heads=2, intermediate=37, vocab=99, tokens=8, frames=16, fusion=16)
    return dict(hidden=768, layers=12, heads=12, intermediate=3072, vocab=30522, tokens=50, frames=500, fusion=128)


AUDIO_DIM, VISUAL_DIM = 74, 35


def text_config(s: dict) -> BertConfig:
    return BertConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], intermediate_size=s["intermediate"], num_labels=1,
    )


def build(name: str, s: dict) -> torch.nn.Module:
    bert = text_config(s)
    common = dict(
        text_config=bert.to_dict(), hidden_size=s["fusion"], audio_input_dim=AUDIO_DIM, visual_input_dim=VISUAL_DIM,
        num_labels=1,
    )
    if name == "baseline":
        model = AutoModelForSequenceClassification.from_config(bert)
        model.config.problem_type = "regression"
        return model
    if name == "clcr":
        return CLCRForSequenceClassification(CLCRConfig(**common))
    return SSUForSequenceClassification(SSUConfig(**common))


def make_batch(name: str, s: dict, batch: int, device: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Ragged batch: each sample keeps between half and all of its tokens and frames."""
    def lengths(full):
        return torch.randint(full // 2, full + 1, (batch,), generator=generator)

    t, f = s["tokens"], s["frames"]
    text_len = lengths(t)
    out = {
        "input_ids": torch.randint(1, s["vocab"], (batch, t), generator=generator),
        "attention_mask": (torch.arange(t)[None] < text_len[:, None]).long(),
        "labels": torch.randn(batch, generator=generator),
    }
    if name != "baseline":
        out["audio_features"] = torch.randn(batch, f, AUDIO_DIM, generator=generator)
        out["audio_attention_mask"] = (torch.arange(f)[None] < lengths(f)[:, None]).long()
        out["visual_features"] = torch.randn(batch, f, VISUAL_DIM, generator=generator)
        out["visual_attention_mask"] = (torch.arange(f)[None] < lengths(f)[:, None]).long()
    if name == "ssu":
        # A parse-like tree: every word's head is an earlier word (1 = first word after [CLS]); [CLS], the last
        # real token ([SEP]) and padding have none.
        position = torch.arange(t)[None].expand(batch, t)
        heads = 1 + (torch.rand(batch, t, generator=generator) * (position - 1).clamp_min(1)).long()
        real_word = (position >= 2) & (position < text_len[:, None] - 1)
        out["dependency_heads"] = torch.where(real_word, heads, torch.full_like(heads, -1))
    return {k: v.to(device) for k, v in out.items()}


def train_step(model, optimizer, batch, bf16: bool, device: str) -> None:
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def step_flops(name: str, s: dict, batch: int, device: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build(name, s).to(device).train()
    data = make_batch(name, s, batch, device, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(**data).loss.backward()
    del model
    return counter.get_total_flops()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(name: str, s: dict, batch: int, mode: str, args) -> dict:
    device = args.device
    torch.manual_seed(0)
    model = build(name, s).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    runner = torch.compile(model, backend=args.compile_backend) if mode.endswith("+compile") else model
    generator = torch.Generator().manual_seed(1)
    batches = [make_batch(name, s, batch, device, generator) for _ in range(min(args.steps, 4))]
    bf16 = mode.startswith("bf16")
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(args.warmup):
        train_step(runner, optimizer, batches[i % len(batches)], bf16, device)
    synchronize(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(args.steps):
        train_step(runner, optimizer, batches[i % len(batches)], bf16, device)
    synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    del runner, model, optimizer
    if mode.endswith("+compile"):
        torch._dynamo.reset()
    return {"samples_s": batch * args.steps / elapsed, "step_s": elapsed / args.steps, "peak_gib": peak, "warmup_s": warmup_s}


def peak_tflops(args) -> tuple[float | None, float | None]:
    bf16, fp32 = args.peak_tflops_bf16, args.peak_tflops_fp32
    if args.device == "cuda":
        gpu = torch.cuda.get_device_name()
        known = next((v for k, v in PEAK_TFLOPS.items() if k in gpu.upper()), (None, None))
        bf16, fp32 = bf16 or known[0], fp32 or known[1]
        print(f"device: {gpu}; peak TFLOP/s bf16 {bf16 or 'unknown'}, fp32 {fp32 or 'unknown'}")
    else:
        print("device: cpu (smoke run; MFU only with --peak_tflops_*)")
    return bf16, fp32


def main(argv=None) -> None:
    args = parse_args(argv)
    s = sizes(args.tiny)
    peak_bf16, peak_fp32 = peak_tflops(args)
    print(
        f"text {s['tokens']} tokens, audio {s['frames']} x {AUDIO_DIM}, visual {s['frames']} x {VISUAL_DIM}; "
        f"backbone hidden {s['hidden']} x {s['layers']} layers; warm-up {args.warmup}, timed {args.steps} steps"
    )
    names = ["baseline"] + [m for m in args.models if m != "baseline"]
    header = (
        f"{'model':<9}{'batch':>6} {'mode':<13}{'samples/s':>11}{'x baseline':>11}{'step ms':>9}"
        f"{'peak GiB':>10}{'GFLOP/step':>12}{'MFU':>7}{'warm-up s':>10}"
    )
    print(header)
    for batch in args.batch_sizes:
        flops_of = {name: step_flops(name, s, batch, args.device) for name in names}
        for mode in args.modes:
            base_rate = None
            for name in names:
                flops = flops_of[name]
                row = measure(name, s, batch, mode, args)
                base_rate = row["samples_s"] if name == "baseline" else base_rate
                peak = peak_bf16 if mode.startswith("bf16") else peak_fp32
                mfu = f"{flops / row['step_s'] / (peak * 1e12):.1%}" if peak else "n/a"
                ratio = f"{row['samples_s'] / base_rate:.2f}" if base_rate else "-"
                print(
                    f"{name:<9}{batch:>6} {mode:<13}{row['samples_s']:>11.1f}{ratio:>11}{row['step_s'] * 1e3:>9.1f}"
                    f"{row['peak_gib']:>10.2f}{flops / 1e9:>12.2f}{mfu:>7}{row['warmup_s']:>10.1f}",
                    flush=True,
                )
    print("x baseline: samples/s over the plain BERT regressor of the same batch size and mode, this run")


if __name__ == "__main__":
    try:
        main()
    except torch.OutOfMemoryError as error:
        sys.exit(f"error: out of GPU memory ({str(error).splitlines()[0]}); try smaller --batch_sizes")
