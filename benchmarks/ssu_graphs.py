"""SSU speed on CPU: graph construction per batch and a full training step, printed as a table.

"structure" = the graphs themselves: text-guided similarity graphs with the adaptive threshold (Eq. 3-5),
anchor weights (Eq. 7), the dependency text graph, and the batched edge lists and node tensor of the
per-modality, fusion and (in training) augmented graphs. "+ node enhancement" adds the text-guided
cross-attention that produces the audio / visual node features (Eq. 1-2), i.e. everything between the
unimodal states and the GAT inputs. The paper reports about 0.015 s per batch for its graph construction
on an A100.

    python benchmarks/ssu_graphs.py                       # batch 128, 50 tokens / frames, width 128, 2 threads
    python benchmarks/ssu_graphs.py --bert-base           # also a training step with a bert-base-sized encoder
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig

from hf_mmfusion import SSUConfig, SSUForSequenceClassification, retain_freed_memory


def random_tree_heads(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random dependency tree per row: token i (after [CLS]) attaches to a random earlier token; -1 at root."""
    B, T = mask.shape
    lengths = mask.sum(1)
    heads = torch.full((B, T), -1, dtype=torch.long)
    for i in range(2, T):
        heads[:, i] = (torch.rand(B, generator=generator) * (i - 1)).long() + 1
    real = torch.arange(T)[None, :] < (lengths[:, None] - 1)   # [SEP] (last real token) and padding: none
    heads[:, 0] = -1
    heads[:, 1] = -1
    return torch.where(real, heads, torch.full_like(heads, -1))


def make_inputs(cfg: SSUConfig, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, dim in (("text", None), ("audio", cfg.audio_input_dim), ("visual", cfg.visual_input_dim)):
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
        lengths[0] = length
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        if name == "text":
            out["input_ids"] = torch.randint(1, cfg.text_config.vocab_size, (batch, length), generator=g) * mask
            out["attention_mask"] = mask
            out["dependency_heads"] = random_tree_heads(mask.bool(), g)
        else:
            out[f"{name}_features"] = torch.randn(batch, length, dim, generator=g)
            out[f"{name}_attention_mask"] = mask
    out["labels"] = torch.randn(batch, generator=g).clamp(-3, 3)
    return out


def timed(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), min(runs)


def graph_construction(model: SSUForSequenceClassification, inputs: dict, repeats: int):
    """Time ``construct_graphs`` from precomputed unimodal states, in the settings training and eval use."""
    base = model.ssu
    captured = {}
    original = base.construct_graphs

    def capture(states, masks, heads=None, augment=False):
        captured.update(states=states, masks=masks, heads=heads)
        return original(states, masks, heads, augment=augment)

    base.construct_graphs = capture
    with torch.no_grad():
        base.eval()
        base(**{k: v for k, v in inputs.items() if k != "labels"})
    base.construct_graphs = original
    states = {m: s.detach() for m, s in captured["states"].items()}
    masks, heads = captured["masks"], captured["heads"]
    rows = []
    base.eval()
    with torch.inference_mode():                                                 # as predict / evaluate run
        nodes, z_anchor = base.enhance_nodes(states, masks)
        rows.append(("structure, eval (inference mode)",) + timed(
            lambda: base.graph_structure(states, nodes, masks, z_anchor, heads), repeats))
        rows.append(("+ node enhancement, eval",) + timed(lambda: base.construct_graphs(states, masks, heads), repeats))
    base.train()
    nodes, z_anchor = base.enhance_nodes(states, masks)
    rows.append(("structure, train (grad, + aug view)",) + timed(
        lambda: base.graph_structure(states, nodes, masks, z_anchor, heads, augment=True), repeats))
    rows.append(("+ node enhancement, train",) + timed(
        lambda: base.construct_graphs(states, masks, heads, augment=True), repeats))
    graphs = base.construct_graphs(states, masks, heads, augment=True)
    edges = {
        "modality graphs": graphs.modality_edge_index.shape[1],
        "augmented view": graphs.augmented_edge_index.shape[1],
        "fusion graph": graphs.fusion_edge_index.shape[1],
    }
    return rows, edges


def training_step(model: SSUForSequenceClassification, inputs: dict, repeats: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step():
        loss = model(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, repeats, warmup=1)


def model_and_inputs(text: BertConfig, args) -> tuple[SSUForSequenceClassification, dict]:
    """A freshly initialised SSU (regression head) over ``text`` and one random batch for it."""
    cfg = SSUConfig(text_config=text.to_dict(), hidden_size=args.hidden_size, graph_proj_dim=args.hidden_size,
                    audio_input_dim=74, visual_input_dim=35, num_labels=1)
    return SSUForSequenceClassification(cfg), make_inputs(cfg, args.batch_size, args.length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--length", type=int, default=50, help="tokens, audio frames and visual frames per sample")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per graph-construction row")
    parser.add_argument("--step-repeats", type=int, default=3)
    parser.add_argument("--bert-base", action="store_true", help="also time a step with a 12-layer, 768-wide encoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    encoders = {"small (2 x 128)": BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=512)}
    if args.bert_base:
        encoders["bert-base (12 x 768)"] = BertConfig()

    print(f"SSU on CPU, {args.threads} threads, batch {args.batch_size}, {args.length} tokens / audio / visual "
          f"frames, width {args.hidden_size}, torch {torch.__version__}\n")
    models = {name: model_and_inputs(text, args) for name, text in encoders.items()}
    first_model, first_inputs = next(iter(models.values()))
    graph_rows, edges = graph_construction(first_model, first_inputs, args.repeats)
    step_rows = [(name, sum(p.numel() for p in model.parameters()), *training_step(model, inputs, args.step_repeats))
                 for name, (model, inputs) in models.items()]
    # The same again once glibc keeps freed blocks (what the hf-mmfusion commands do on start-up). Measured
    # second because the setting cannot be undone in a running process.
    retained = retain_freed_memory()
    if retained:
        retained_graph_rows, _ = graph_construction(first_model, first_inputs, args.repeats)
        retained_steps = [training_step(*model_and_inputs(text, args), args.step_repeats) for text in encoders.values()]

    head = f"{'graph construction per batch':<36}{'median s':>10}{'best s':>10}"
    print(head + (f"{'retained: median s':>22}{'best s':>10}" if retained else ""))
    for k, (label, median, best) in enumerate(graph_rows):
        line = f"{label:<36}{median:>10.4f}{best:>10.4f}"
        if retained:
            line += f"{retained_graph_rows[k][1]:>22.4f}{retained_graph_rows[k][2]:>10.4f}"
        print(line)
    print("edges per batch: " + ", ".join(f"{k} {v:,}" for k, v in edges.items()) + "\n")
    head = f"{'training step (fwd + bwd + AdamW)':<36}{'params':>12}{'median s':>10}{'best s':>10}"
    print(head + (f"{'retained: median s':>22}{'best s':>10}{'speed-up':>10}" if retained else ""))
    for k, (name, params, median, best) in enumerate(step_rows):
        line = f"{name:<36}{params / 1e6:>11.1f}M{median:>10.3f}{best:>10.3f}"
        if retained:
            r_median, r_best = retained_steps[k]
            line += f"{r_median:>22.3f}{r_best:>10.3f}{median / r_median:>9.2f}x"
        print(line)
    if retained:
        print("\n'retained': after hf_mmfusion.retain_freed_memory(), which the hf-mmfusion commands call on start-up.")


if __name__ == "__main__":
    main()
