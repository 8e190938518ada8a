"""Training-step overhead of CLCR over its text backbone alone.

Times forward + backward + AdamW step of (a) the text encoder with a mean-pooled linear regression head
and (b) the full CLCR model around the same text encoder configuration (random weights, no download),
in the same process: warm-up steps, then the median of the timed steps. Prints a table and the ratio.

    python benchmarks/clcr_overhead.py                       # BERT-base sized, batch 32, 50 tokens/frames
    python benchmarks/clcr_overhead.py --layers 2 --width 128 --heads 4 --steps 5   # quick check

CPU numbers on a shared machine are noisy; compare the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from transformers import BertConfig

from hf_mmfusion.models.configuration_clcr import CLCRConfig
from hf_mmfusion.models.masking import masked_mean
from hf_mmfusion.models.modeling_clcr import CLCRForSequenceClassification
from hf_mmfusion.models.text_backbone import TextLevelEncoder


class TextOnlyRegressor(nn.Module):
    """The baseline: the text encoder, a masked mean over tokens and a linear score."""

    def __init__(self, text_config: BertConfig):
        super().__init__()
        self.encoder = TextLevelEncoder(text_config)
        self.head = nn.Linear(text_config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, labels, **_):
        mask, out = self.encoder(input_ids, attention_mask, output_hidden_states=False)
        score = self.head(masked_mean(out.last_hidden_state, mask)).squeeze(-1)
        return nn.functional.mse_loss(score, labels)


def make_batch(args, generator: torch.Generator) -> dict[str, torch.Tensor]:
    b = args.batch_size
    lengths = torch.randint(args.tokens // 2, args.tokens + 1, (b,), generator=generator)
    frames_a = torch.randint(args.frames // 2, args.frames + 1, (b,), generator=generator)
    frames_v = torch.randint(args.frames // 2, args.frames + 1, (b,), generator=generator)
    return {
        "input_ids": torch.randint(1000, 20000, (b, args.tokens), generator=generator),
        "attention_mask": (torch.arange(args.tokens)[None] < lengths[:, None]).long(),
        "audio_features": torch.randn(b, args.frames, args.audio_dim, generator=generator),
        "audio_attention_mask": (torch.arange(args.frames)[None] < frames_a[:, None]).long(),
        "visual_features": torch.randn(b, args.frames, args.visual_dim, generator=generator),
        "visual_attention_mask": (torch.arange(args.frames)[None] < frames_v[:, None]).long(),
        "labels": torch.randn(b, generator=generator),
    }


def time_steps(model: nn.Module, step, batch, warmup: int, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = step(model, batch)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--audio-dim", type=int, default=74)
    parser.add_argument("--visual-dim", type=int, default=35)
    parser.add_argument("--layers", type=int, default=12, help="text encoder layers")
    parser.add_argument("--width", type=int, default=768, help="text encoder width")
    parser.add_argument("--heads", type=int, default=12, help="text encoder attention heads")
    parser.add_argument("--hidden-size", type=int, default=128, help="CLCR fusion width d")
    parser.add_argument("--shared-dim", type=int, default=64, help="CLCR shared rank r")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    text_config = BertConfig(
        hidden_size=args.width, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=4 * args.width,
    )
    generator = torch.Generator().manual_seed(args.seed)
    batch = make_batch(args, generator)
    torch.manual_seed(args.seed)
    baseline = TextOnlyRegressor(text_config)
    clcr = CLCRForSequenceClassification(
        CLCRConfig(
            text_config=text_config.to_dict(), audio_input_dim=args.audio_dim, visual_input_dim=args.visual_dim,
            hidden_size=args.hidden_size, shared_dim=args.shared_dim, num_labels=1,
        )
    )

    results = {}
    # Alternate the two models so slow phases of a shared machine hit both.
    for name, model, step in (
        ("text backbone", baseline, lambda m, b: m(**b)),
        ("CLCR", clcr, lambda m, b: m(**b).loss),
        ("text backbone", baseline, lambda m, b: m(**b)),
        ("CLCR", clcr, lambda m, b: m(**b).loss),
    ):
        results.setdefault(name, []).extend(time_steps(model, step, batch, args.warmup, args.steps))

    params = {
        "text backbone": sum(p.numel() for p in baseline.parameters()),
        "CLCR": sum(p.numel() for p in clcr.parameters()),
    }
    medians = {name: statistics.median(times) for name, times in results.items()}
    print(
        f"batch {args.batch_size}, {args.tokens} tokens, {args.frames} audio/visual frames, text encoder "
        f"{args.layers} x {args.width}, d={args.hidden_size}, r={args.shared_dim}, threads {torch.get_num_threads()}"
    )
    print(f"{'model':<15} {'params':>12} {'median step (s)':>16} {'min (s)':>9} {'max (s)':>9} {'steps':>6}")
    for name in ("text backbone", "CLCR"):
        t = results[name]
        print(f"{name:<15} {params[name]:>12,} {medians[name]:>16.3f} {min(t):>9.3f} {max(t):>9.3f} {len(t):>6}")
    print(f"ratio CLCR / text backbone: {medians['CLCR'] / medians['text backbone']:.3f}")


if __name__ == "__main__":
    main()
