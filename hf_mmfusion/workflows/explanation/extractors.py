"""One extractor per model type: which analysis outputs to ask the model for, and how to read them.

Everything a report says about a model comes from that model's outputs; an extractor only selects,
indexes and aggregates them. ``EXTRACTORS`` registers them by ``model_type``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from . import figures

# How many cross-modal links of each modality pair a sample's report lists, strongest first.
FUSION_LINKS_SHOWN = 5


def input_masks(batch: dict, modalities: list[str], lengths: dict[str, int], batch_size: int) -> dict[str, torch.Tensor]:
    """bool ``[B, length]`` per modality: the real positions of the inputs (all masked where a modality is absent)."""
    masks = {}
    for m in modalities:
        keys = ("input_ids", "inputs_embeds") if m == "text" else (f"{m}_features",)
        given = next((batch[k] for k in keys if batch.get(k) is not None), None)
        mask = batch.get("attention_mask" if m == "text" else f"{m}_attention_mask")
        if given is None:
            masks[m] = torch.zeros(batch_size, lengths[m], dtype=torch.bool)
        elif mask is None:
            masks[m] = torch.ones(batch_size, lengths[m], dtype=torch.bool)
        else:
            masks[m] = mask.bool().cpu()
    return masks


def _density(adjacency: np.ndarray) -> float:
    n = adjacency.shape[0]
    if n < 2:
        return 0.0
    off = adjacency.copy()
    np.fill_diagonal(off, 0)
    return float((off != 0).sum() / (n * (n - 1)))


def _mean_over(samples: list[dict], key: str, modalities: list[str]) -> dict[str, float]:
    return {m: float(np.mean([s[key][m] for s in samples])) for m in modalities}


class Extractor(ABC):
    """What ``explain`` reads from one model type.

    ``flags``: the forward arguments that ask for the analysis outputs. ``split_figures`` and
    ``sample_figures``: the model's own figures (``figures.py``), drawn once per report and once per sample
    drawn one by one; the occlusion figure is every model's.
    """

    model_type = ""
    flags: dict = {}
    split_figures: tuple = ()
    sample_figures: tuple = ()

    def check_options(self, tsne: bool) -> None:
        """A ``ValueError`` for an option this model has nothing to apply to."""
        return None

    @abstractmethod
    def node_masks(self, model, out, batch: dict) -> dict[str, torch.Tensor]:
        """bool ``[B, T_m]`` per modality: the positions of the outputs that are real tokens, frames or nodes."""

    @abstractmethod
    def samples(self, model, out, masks: dict, examples: set[int], offset: int) -> list[dict]:
        """One JSON-ready record per sample of the batch (``offset``: the batch's first sample index)."""

    def arrays(self, out, masks: dict, modalities: list[str]) -> dict[str, np.ndarray]:
        """Per-batch arrays the report needs over all samples (concatenated along the samples)."""
        return {}

    def level_names(self, samples: list[dict]) -> list[str]:
        return []

    def summarise(self, samples: list[dict], modalities: list[str]) -> dict:
        """The model's analyses averaged over the samples."""
        return {}

    def finish(self, samples: list[dict], summary: dict, arrays: dict, modalities: list[str], tsne: bool, seed: int):
        """Analyses over all samples at once (written into ``samples`` and ``summary``)."""
        return None


class CLCRExtractor(Extractor):
    """Level weights, modality selection, private gates, participation, token budgets and the summaries' map."""

    model_type = "clcr"
    flags = {"output_token_weights": True}
    split_figures = (figures.weights_figure, figures.participation_figure, figures.map_figure)
    sample_figures = (figures.token_figure,)

    def node_masks(self, model, out, batch):
        # CLCR keeps every token and frame it is given, so its outputs index the inputs' positions.
        modalities = list(model.config.modalities)
        lengths = {m: out.token_weights[j].shape[-1] for j, m in enumerate(modalities)}
        return input_masks(batch, modalities, lengths, out.logits.shape[0])

    def samples(self, model, out, masks, examples, offset):
        modalities = list(model.config.modalities)
        rows = []
        for b in range(out.logits.shape[0]):
            rows.append({
                "level_weights": out.level_weights[b].tolist(),
                "modality_weights": {m: float(out.modality_weights[b, j]) for j, m in enumerate(modalities)},
                "private_gates": {m: float(out.private_gates[b, j]) for j, m in enumerate(modalities)},
                "participation": {m: out.participation_ratios[b, j].tolist() for j, m in enumerate(modalities)},
                "token_weights": {
                    m: out.token_weights[j][b][:, masks[m][b]].tolist()
                    for j, m in enumerate(modalities)
                    if masks[m][b].any()
                },
            })
        return rows

    def arrays(self, out, masks, modalities):
        return {
            "shared": out.modality_shared_summaries.numpy(),
            "private": out.modality_private_summaries.numpy(),
            "present": np.stack([masks[m].any(1).numpy() for m in modalities], 1),
        }

    def level_names(self, samples):
        return [f"level {i + 1}" for i in range(len(samples[0]["level_weights"]))]

    def summarise(self, samples, modalities):
        return {
            "level_weights": np.mean([s["level_weights"] for s in samples], axis=0).tolist(),
            "modality_weights": _mean_over(samples, "modality_weights", modalities),
            "private_gates": _mean_over(samples, "private_gates", modalities),
            "participation": {
                m: np.mean([s["participation"][m] for s in samples if s["lengths"][m]], axis=0).tolist()
                for m in modalities
                if any(s["lengths"][m] for s in samples)
            },
        }

    def finish(self, samples, summary, arrays, modalities, tsne, seed):
        mapped = summary_map(arrays, tsne, seed)
        if mapped is None:
            return
        coords, keys = mapped
        summary["summary_map"] = {"method": "tsne" if tsne else "pca"}
        for (n, j, kind), (x, y) in zip(keys, coords.tolist()):
            samples[n].setdefault("summary_map", {}).setdefault(modalities[j], {})[kind] = [x, y]


def summary_map(arrays: dict, tsne: bool, seed: int) -> tuple[np.ndarray, list[tuple[int, int, str]]] | None:
    """2-D coordinates of every present modality's shared and private summary: (coords, [(sample, m, kind)])."""
    shared, private, present = arrays["shared"], arrays["private"], arrays["present"]
    points, keys = [], []
    for n, j in zip(*np.nonzero(present)):
        points += [shared[n, j], private[n, j]]
        keys += [(int(n), int(j), "shared"), (int(n), int(j), "private")]
    if len(points) < 3:
        return None
    x = np.stack(points)
    if tsne:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(x) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), keys
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x), keys


class SSUExtractor(Extractor):
    """Anchor weights, graph densities and (for the samples drawn one by one) the graphs, the thresholds
    lambda and the strongest cross-modal links of the fusion graph, as the model built them."""

    model_type = "ssu"
    flags = {"output_graphs": True}
    sample_figures = (figures.text_graph_figure, figures.modality_graphs_figure)

    def check_options(self, tsne: bool) -> None:
        if tsne:
            raise ValueError("tsne: the 2-D map is of CLCR's shared / private summaries; SSU has none")

    def node_masks(self, model, out, batch):
        return {m: out[f"node_mask_{m}"].bool() for m in model.config.modalities}

    def samples(self, model, out, masks, examples, offset):
        config = model.config
        modalities = list(config.modalities)
        lambdas = {}
        if out.threshold_lambda is not None:
            lambdas = {m: float(v) for m, v in zip(config.graph_modalities, out.threshold_lambda.tolist())}
        links = fusion_links(out.cross_modal_edges, out.cross_modal_edge_weights, modalities, out.logits.shape[0])
        rows = []
        for b in range(out.logits.shape[0]):
            beta = {m: out[f"anchor_weights_{m}"][b][masks[m][b]].numpy() for m in modalities}
            graphs, densities = {}, {}
            for m in modalities:
                valid = masks[m][b]
                if not valid.any():
                    continue
                full = out.text_adjacency if m == "text" else out[f"adjacency_{m}"]
                adjacency = full[b][valid][:, valid].numpy()
                densities[m] = _density(adjacency)
                if offset + b in examples:
                    if m == "text":
                        targets, sources = np.nonzero(adjacency)
                        graphs[m] = {"arcs": [[int(s), int(t)] for t, s in zip(targets, sources)]}
                    else:
                        graphs[m] = {"adjacency": adjacency.tolist()}
            row = {
                "anchor_weights": {m: v.tolist() for m, v in beta.items() if len(v)},
                "graph_density": densities,
                "threshold_lambda": lambdas,
                "fusion_links": links[b],
            }
            if graphs:
                row["graphs"] = graphs
            rows.append(row)
        return rows

    def summarise(self, samples, modalities):
        return {
            "graph_density": {
                m: float(np.mean([s["graph_density"][m] for s in samples if m in s["graph_density"]]))
                for m in modalities
                if any(m in s["graph_density"] for s in samples)
            },
            "threshold_lambda": samples[0]["threshold_lambda"],
        }


def fusion_links(edges: torch.Tensor, weights: torch.Tensor, modalities: list[str], batch_size: int,
                 limit: int = FUSION_LINKS_SHOWN) -> list[dict[str, list[dict]]]:
    """Per sample, the cross-modal links the model built (``cross_modal_edges`` / ``cross_modal_edge_weights``
    of SSU's outputs), ``{"a-b": [{a: node, b: node, "weight": w}, ...]}``, the ``limit`` strongest of each
    modality pair first (ties in the model's order)."""
    rows: list[dict[str, list[dict]]] = [{} for _ in range(batch_size)]
    edges, weights = edges.tolist(), weights.tolist()
    order = sorted(range(len(edges)), key=lambda e: -weights[e])
    for e in order:
        sample, ma, na, mb, nb = edges[e]
        a, b = modalities[ma], modalities[mb]
        shown = rows[sample].setdefault(f"{a}-{b}", [])
        if len(shown) < limit:
            shown.append({a: int(na), b: int(nb), "weight": float(weights[e])})
    # Pairs in config order, as the model enumerates them.
    pairs = [f"{a}-{b}" for i, a in enumerate(modalities) for b in modalities[i + 1:]]
    return [{p: row[p] for p in pairs if p in row} for row in rows]


EXTRACTORS: dict[str, Extractor] = {e.model_type: e for e in (CLCRExtractor(), SSUExtractor())}


def extractor_for(model) -> Extractor:
    """The extractor of ``model``'s type; a ``ValueError`` naming the type for any other model."""
    model_type = getattr(model.config, "model_type", None)
    if model_type in EXTRACTORS:
        return EXTRACTORS[model_type]
    if not hasattr(model.config, "modalities"):
        raise ValueError(
            f"model: explain reads the analyses of CLCR and SSU models; this is a plain {model_type!r} text model "
            "(the text-only baseline) and has none: use predict or evaluate"
        )
    raise ValueError(f"model: expected a CLCR or SSU model, got model_type {model_type!r}")


__all__ = ["EXTRACTORS", "Extractor", "extractor_for", "fusion_links", "input_masks"]
