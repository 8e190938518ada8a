"""The report's figures (matplotlib, drawn off-screen), each from the numbers in ``explain.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .core import Explanation

FIGURE_DPI = 110
FRAME_MODALITIES = ("audio", "visual")
MODALITY_COLOURS = {"text": "#1f77b4", "audio": "#d62728", "visual": "#2ca02c"}
LEVEL_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, directory: Path, stem: str, svg: bool, figures: dict, key: str) -> None:
    fig.savefig(directory / f"{stem}.png", dpi=FIGURE_DPI)
    figures[key] = f"{stem}.png"
    if svg:
        fig.savefig(directory / f"{stem}.svg")
        figures[f"{key}_svg"] = f"{stem}.svg"


def _close(plt, fig):
    plt.close(fig)


def _stacked(ax, values: np.ndarray, names: list[str], colours: list[str], title: str) -> None:
    # One filled step band per component rather than a bar per sample: hundreds of samples draw as fast as ten.
    values = values[np.argsort(-values[:, 0], kind="stable")]
    edges = np.arange(len(values) + 1) - 0.5
    bottom = np.zeros(len(values))
    for j, name in enumerate(names):
        top = bottom + values[:, j]
        ax.stairs(top, edges, baseline=bottom, fill=True, color=colours[j], label=f"{name} (mean {values[:, j].mean():.2f})")
        bottom = top
    ax.set_ylim(0, 1)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"samples ({len(values)}, sorted by the first weight)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.85)
    if len(values) > 40:
        ax.set_xticks([])


def weights_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    levels = np.array([s["level_weights"] for s in exp.samples])
    mods = np.array([[s["modality_weights"][m] for m in exp.modalities] for s in exp.samples])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    _stacked(axes[0], levels, exp.level_names, list(LEVEL_COLOURS), "InterCAD level weights α per sample")
    _stacked(axes[1], mods, exp.modalities, [MODALITY_COLOURS[m] for m in exp.modalities],
             "modality selection weights β per sample")
    axes[0].set_ylabel("weight (sums to 1)")
    fig.tight_layout()
    _save(fig, directory, "weights", False, figures, "weights")
    _close(plt, fig)


def participation_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    mods = [m for m in exp.modalities if any(s["lengths"][m] for s in exp.samples)]
    L = len(exp.level_names)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * L * len(mods) / 2, 3.6), layout="constrained")
    width = 0.8 / len(mods)
    highest = 1.0
    for j, m in enumerate(mods):
        values = np.array([s["participation"][m] for s in exp.samples if s["lengths"][m]])
        x = np.arange(L) + (j - (len(mods) - 1) / 2) * width
        mean, std = values.mean(0), values.std(0)
        ax.bar(x, mean, width, yerr=std, capsize=3, color=MODALITY_COLOURS[m], label=m)
        # Each value stands above the end of its error bar, which would otherwise cross it.
        for xi, v, top in zip(x, mean, mean + std):
            ax.annotate(f"{v:.2f}", (xi, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
        highest = max(highest, float((mean + std).max()))
    ax.set_xticks(np.arange(L), exp.level_names)
    ax.set_ylim(0, highest + 0.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("fraction of tokens with budget > 0")
    ax.set_title(f"token participation per level and modality (mean ± std, {len(exp.samples)} samples)", fontsize=10)
    fig.legend(fontsize=8, loc="outside lower center", ncol=len(mods), frameon=False)
    _save(fig, directory, "participation", False, figures, "participation")
    _close(plt, fig)


def token_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    sample = exp.samples[index]
    weights = sample["token_weights"]
    mods = [m for m in exp.modalities if m in weights]
    if not mods:
        return
    longest = max(len(weights[m][0]) for m in mods)
    width = min(18.0, max(6.0, 1.6 + 0.42 * longest))
    fig, axes = plt.subplots(len(mods), 1, figsize=(width, 1.4 + 1.35 * len(mods)), squeeze=False, layout="constrained")
    image = None
    for ax, m in zip(axes[:, 0], mods):
        w = np.array(weights[m])
        image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(exp.level_names)), exp.level_names, fontsize=7)
        if m == "text" and "tokens" in sample:
            ax.xaxis.tick_top()
            ax.set_xticks(range(w.shape[1]), sample["tokens"], rotation=40, ha="left", rotation_mode="anchor", fontsize=8)
        else:
            step = max(1, w.shape[1] // 20)
            ax.set_xticks(range(0, w.shape[1], step))
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel(f"{m} frame", fontsize=8)
        ax.set_ylabel(m, fontsize=9, color=MODALITY_COLOURS[m])
    fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, label="budget weight w")
    fig.suptitle(f"token budget weights, sample {sample['id']} (prediction {short_prediction(sample['prediction'])})", fontsize=10)
    _save(fig, directory, f"tokens_{index}", svg, figures, f"tokens_{index}")
    _close(plt, fig)


def map_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    if "summary_map" not in exp.summary:
        return
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for m in exp.modalities:
        for kind, marker in (("shared", "o"), ("private", "^")):
            xy = np.array([s["summary_map"][m][kind] for s in exp.samples if m in s.get("summary_map", {})])
            if len(xy):
                ax.scatter(xy[:, 0], xy[:, 1], s=14, marker=marker, alpha=0.7, label=f"{m} {kind}",
                           color=MODALITY_COLOURS[m], facecolors="none" if kind == "private" else None)
    method = exp.summary["summary_map"]["method"]
    ax.set_title(f"{'t-SNE' if method == 'tsne' else 'PCA'} of shared and private summaries", fontsize=10)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=7, ncol=2, loc="best", framealpha=0.85)
    fig.tight_layout()
    _save(fig, directory, "summary_map", False, figures, "summary_map")
    _close(plt, fig)


def text_graph_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    from matplotlib.patches import Arc

    sample = exp.samples[index]
    graph = sample.get("graphs", {}).get("text")
    tokens = sample.get("tokens")
    if graph is None or tokens is None:
        return
    beta = np.array(sample["anchor_weights"]["text"])
    shade = beta / max(beta.max(), 1e-12)
    n = len(tokens)
    spacing = 1.0
    width = min(18.0, max(6.0, 1.2 + 0.75 * n))
    span = max([abs(s - t) for s, t in graph["arcs"]] + [1])
    fig, ax = plt.subplots(figsize=(width, 1.6 + 0.35 * min(span, 12)))
    cmap = plt.get_cmap("Oranges")
    seen = set()
    for source, target in graph["arcs"]:
        pair = (min(source, target), max(source, target))
        directed = [target, source] not in graph["arcs"]
        if pair in seen and not directed:
            continue
        seen.add(pair)
        left, right = pair
        d = (right - left) * spacing
        ax.add_patch(Arc(((left + right) * spacing / 2, 0.3), d, 0.55 * d, theta1=0, theta2=180, color="#555555", lw=1.0))
        if directed:
            ax.annotate("", xy=(target * spacing, 0.32), xytext=(target * spacing + (0.08 if source > target else -0.08), 0.42),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8})
    for i, token in enumerate(tokens):
        ax.text(i * spacing, 0.0, token, ha="center", va="center", fontsize=9, rotation=30 if len(token) > 6 else 0,
                bbox={"boxstyle": "round,pad=0.25", "facecolor": cmap(0.1 + 0.8 * shade[i]), "edgecolor": "#999999"})
    ax.set_xlim(-0.8, (n - 1) * spacing + 0.8)
    ax.set_ylim(-0.5, 0.45 + 0.3 * span)
    ax.axis("off")
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, float(beta.max())))
    fig.colorbar(mappable, ax=ax, fraction=0.02, pad=0.01, label="anchor weight β")
    fig.suptitle(f"text graph (arcs) with anchor weights, sample {sample['id']}", fontsize=10)
    _save(fig, directory, f"text_graph_{index}", svg, figures, f"text_graph_{index}")
    _close(plt, fig)


def _node_label(sample: dict, modality: str, i: int) -> str:
    if modality == "text" and "tokens" in sample:
        return sample["tokens"][i]
    return f"{modality[0]}{i}"


def modality_graphs_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    sample = exp.samples[index]
    mods = [m for m in exp.modalities if m in FRAME_MODALITIES and m in sample.get("graphs", {})]
    if not mods:
        return
    fig, axes = plt.subplots(len(mods), 2, figsize=(10, 3.9 * len(mods)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    for row, m in zip(axes, mods):
        adjacency = np.array(sample["graphs"][m]["adjacency"])
        beta = np.array(sample["anchor_weights"][m])
        divider = make_axes_locatable(row[0])
        strip = divider.append_axes("top", size="7%", pad=0.06)
        bar = divider.append_axes("right", size="5%", pad=0.08)
        image = row[0].imshow(adjacency, cmap="magma_r", interpolation="nearest", vmin=0, aspect="auto")
        row[0].set_xlabel("source node")
        row[0].set_ylabel("target node")
        fig.colorbar(image, cax=bar, label="edge weight")
        strip.imshow(beta[None, :], cmap="Oranges", vmin=0, aspect="auto", interpolation="nearest")
        strip.set_xticks([])
        strip.set_yticks([0], ["β"])
        strip.set_title(f"{m} graph A (density {sample['graph_density'][m]:.2f}, "
                        f"λ = {sample['threshold_lambda'].get(m, float('nan')):.2f}); β: anchor weights", fontsize=9)
        partner = next((p for p in sample["fusion_links"] if m in p.split("-") and "text" in p.split("-")), None)
        partner = partner or next((p for p in sample["fusion_links"] if m in p.split("-")), None)
        ax = row[1]
        if partner is None or not sample["fusion_links"][partner]:
            ax.axis("off")
            ax.text(0.5, 0.5, "no cross-modal links", ha="center", va="center")
            continue
        other = [p for p in partner.split("-") if p != m][0]
        links = sample["fusion_links"][partner]
        labels = [f"{_node_label(sample, other, link[other])} ↔ {m[0]}{link[m]}" for link in links]
        ax.barh(range(len(links)), [link["weight"] for link in links], color=MODALITY_COLOURS[m])
        ax.set_yticks(range(len(links)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("fusion edge weight")
        ax.set_title(f"strongest {other}-{m} links of the fusion graph", fontsize=9)
    fig.suptitle(f"SSU modality graphs, sample {sample['id']}", fontsize=10)
    fig.tight_layout()
    _save(fig, directory, f"modality_graphs_{index}", False, figures, f"modality_graphs_{index}")
    _close(plt, fig)


def occlusion_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    occlusion = exp.summary.get("occlusion")
    if not occlusion:
        return
    mods = list(occlusion)
    changes = np.array([[s["occlusion"][m]["change"] for m in mods] for s in exp.samples])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    means = [occlusion[m]["mean_abs_change"] for m in mods]
    known = np.isfinite(changes)
    spread = [float(np.abs(changes[known[:, j], j]).std()) if known[:, j].any() else math.nan for j in range(len(mods))]
    bars = axes[0].bar(mods, means, yerr=spread, capsize=4, color=[MODALITY_COLOURS[m] for m in mods])
    metric_name = "mae" if exp.regression else "accuracy"
    metrics = exp.summary.get("metrics")
    for bar, m in zip(bars, mods):
        if not math.isfinite(bar.get_height()):
            continue
        note = f"{bar.get_height():.3f}"
        if metrics and f"drop {m}" in metrics:
            note += f"\n{metric_name} {metrics[f'drop {m}'][metric_name]:.3f}"
        axes[0].annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height() + spread[mods.index(m)]), ha="center",
                         va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
    axes[0].set_ylim(0, max([a + b for a, b in zip(means, spread) if math.isfinite(a + b)] + [1e-6]) * 1.3)
    title = "mean |score change| with the modality dropped"
    if metrics and "clean" in metrics:
        title += f"\n(clean {metric_name} {metrics['clean'][metric_name]:.3f})"
    axes[0].set_title(title, fontsize=9)
    axes[0].set_ylabel("prediction score change" if exp.regression else "probability change")
    limit = max(float(np.abs(changes[known]).max()) if known.any() else 0.0, 1e-6)
    # Grey marks a sample with nothing left once the modality is dropped (no change defined), not a zero.
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#9e9e9e")
    image = axes[1].imshow(changes.T, aspect="auto", cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    axes[1].set_yticks(range(len(mods)), mods)
    axes[1].set_xlabel(f"sample ({len(exp.samples)})")
    if len(exp.samples) <= 30:
        axes[1].set_xticks(range(len(exp.samples)), [s["id"] for s in exp.samples], rotation=60, fontsize=7)
    axes[1].set_title("per sample: clean score - score without the modality", fontsize=9)
    fig.colorbar(image, ax=axes[1], fraction=0.04, pad=0.02)
    fig.tight_layout()
    _save(fig, directory, "occlusion", False, figures, "occlusion")
    _close(plt, fig)


def short_prediction(prediction) -> str:
    if isinstance(prediction, dict):
        return f"{prediction['label']} {prediction['score']:.2f}"
    return f"{prediction:.2f}"

