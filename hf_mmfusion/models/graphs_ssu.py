# Copyright 2026 The hf_mmfusion Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""SSU graph construction: the text-guided audio / visual graphs (Eq. 3-5), the dependency text graph, the
anchor edges (Eq. 7), the fusion graph and the augmented view, as batched edge lists over one node tensor.

Every graph is built for the whole batch with tensor operations: arcs ``(sample, target, source)`` (from a
dense ``[B, T, T]`` graph through ``nonzero``, or straight from the text's head indices) -> node ids
``b * N + slot_m + i`` in one node tensor shared by every view. Padded slots stay in the node tensor with
only the GAT's self loop and never reach a readout. Masks are bool ``[B, T]``.

The model (``modeling_ssu.py``) owns the learnable parts; this file is the structure they act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_ssu import SSUConfig
from .masking import additive_mask, masked_mean, masked_softmax
from .modeling_common import SignalLinear


def pair_mask(mask: torch.Tensor, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Off-diagonal pairs of real nodes: ``mask[B, T] -> [B, T, T]`` (bool, or 0 / 1 in a float ``dtype``)."""
    off_diagonal = ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    pairs = mask[:, :, None] & mask[:, None, :] & off_diagonal
    return pairs if dtype == torch.bool else pairs.to(dtype)


def chain_heads_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Heads of the sequence chain: every real token points to the previous real one (``-1`` for the first)."""
    T = mask.shape[1]
    idx = torch.arange(T, device=mask.device).expand_as(mask)
    last = torch.where(mask, idx, torch.full_like(idx, -1)).cummax(dim=1).values      # latest real index <= t
    prev = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)
    return torch.where(mask, prev, torch.full_like(prev, -1))


def head_arcs(heads: torch.Tensor, mask: torch.Tensor, directed: bool = False) -> tuple[torch.Tensor, ...]:
    """Arcs of a batch of head-index trees: ``heads[B, T]`` -> ``(sample, target, source)``, each ``[E]`` long.

    Token i and its head ``h = heads[b, i]`` are linked when both are real, h lies in the row and h != i
    (the GAT adds self loops): h sends to i, and for an undirected graph i also sends to h. Two tokens that
    are each other's head are linked once. Computed from the ``[B, T]`` heads, never a dense ``[B, T, T]`` matrix.
    """
    B, T = heads.shape
    pos = torch.arange(T, device=heads.device)
    head = heads.clamp(0, T - 1)
    linked = (heads >= 0) & (heads < T) & (head != pos) & mask & mask.gather(1, head)
    if not directed:
        linked &= ~((heads.gather(1, head) == pos) & (pos > head))              # the later token's arc is the duplicate
    b, i = linked.nonzero().unbind(1)
    j = head.reshape(-1).index_select(0, b * T + i)
    if directed:
        return b, i, j
    return torch.cat([b, b]), torch.cat([i, j]), torch.cat([j, i])


def adjacency_from_arcs(arcs: tuple[torch.Tensor, ...], batch: int, length: int) -> torch.Tensor:
    """Dense bool ``[B, T, T]`` from ``(sample, target, source)`` arcs: ``adj[b, i, j]`` = j sends to i."""
    adj = torch.zeros(batch, length, length, dtype=torch.bool, device=arcs[0].device)
    adj[arcs] = True
    return adj


def heads_adjacency(heads: torch.Tensor, mask: torch.Tensor, directed: bool = False) -> torch.Tensor:
    """Text adjacency from head indices (see ``head_arcs``): ``heads[B, T]`` -> bool ``[B, T, T]``, j sends to i."""
    return adjacency_from_arcs(head_arcs(heads, mask, directed), *heads.shape)


def adaptive_threshold(
    a0: torch.Tensor, pairs: torch.Tensor, lam: torch.Tensor, soft_temp: float, relaxation: str = "band"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5: ``tau_b = mu_b + lam * sigma_b`` over the real off-diagonal pairs of sample b (population std).

    ``a0[B, T, T]`` must be zero outside ``pairs`` (as ``SSUTextGuidedGraph.base_adjacency`` returns it);
    ``pairs`` is bool or 0 / 1 in ``a0``'s dtype. The soft mask is
    ``s = sigmoid((a0 - tau) / t)`` with ``t = soft_temp * max(sigma, mu / 100)``: the floor keeps the
    gradient bounded on near-constant graphs (an absolute ``1e-6`` gave ``|dA| ~ 1e5`` at ``sigma ~ 1e-7``).

    ``relaxation="band"``: the edges are the pairs with ``a0 >= tau - 3 t`` and weigh ``a0 * s``, so pairs on
    both sides of the threshold carry lam's gradient and an edge fades out (to ``0.05 a0``) instead of
    vanishing at ``tau``. ``"straight_through"``: the paper's hard mask, edges ``a0 >= tau`` weighing ``a0``,
    with the gradient of ``s`` substituted; lam then only hears from edges that are already kept.
    Returns ``edges`` (bool ``[B, T, T]``) and the edge values (0 elsewhere).
    """
    pairs = pairs.to(a0.dtype)
    count = pairs.sum((1, 2)).clamp_min(1.0)                                    # [B]
    mu = a0.sum((1, 2)) / count
    mu3 = mu[:, None, None]
    # A vector norm has a zero (not NaN) gradient at 0, so a constant graph (sigma = 0) stays finite.
    sigma = torch.linalg.vector_norm((a0 - mu3) * pairs, dim=(1, 2)) / count.sqrt()
    tau = mu3 + lam * sigma[:, None, None]                                    # Eq. 5, tau = mu + lambda sigma
    temp = (soft_temp * torch.maximum(sigma, 0.01 * mu))[:, None, None] + torch.finfo(a0.dtype).tiny
    cut = tau - 3.0 * temp if relaxation == "band" else tau
    with torch.no_grad():
        edges = (a0 >= cut) & (pairs > 0)
    hard = edges.to(a0.dtype)
    if relaxation == "band":
        return edges, a0 * hard * torch.sigmoid((a0 - tau) / temp)                # Eq. 5 with a soft band
    if torch.is_grad_enabled() and (lam.requires_grad or a0.requires_grad):
        soft = torch.sigmoid((a0 - tau) / temp)
        hard = hard + soft - soft.detach()
    return edges, a0 * hard                                                     # Eq. 5, A^m = A^m * M^m


def augment_adjacency(
    adj: torch.Tensor,
    weight: torch.Tensor | None,
    pairs: torch.Tensor,
    drop: float,
    add: float,
    symmetric: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturbed copy of a batch of graphs for the augmented view (edge drop / edge add).

    Each edge of ``adj[B, T, T]`` is dropped with probability ``drop``; then ``ceil(add * |E_b|)`` pairs
    among ``pairs`` that are not edges are added uniformly at random (``|E_b|`` counts undirected edges
    once when ``symmetric``). Added edges weigh the mean kept weight of their sample (1 without any).
    ``weight=None`` means every edge weighs 1. Returns ``(adjacency, weight)``, both ``[B, T, T]``.
    """
    B, T, _ = adj.shape
    if symmetric:
        upper = torch.ones(T, T, dtype=torch.bool, device=adj.device).triu(1)
        base, candidates = adj & upper, pairs & upper & ~adj
    else:
        base, candidates = adj, pairs & ~adj
    # Edges and candidates are disjoint, so one uniform draw serves both the drop test and the add ranking.
    uniform = torch.rand(B, T, T, device=adj.device)
    keep = base & (uniform >= drop)
    n_add = torch.ceil(add * base.sum((1, 2)).to(torch.float32)).long()
    n_add = torch.minimum(n_add, candidates.sum((1, 2)))                        # [B]
    added = torch.zeros(B, T * T, dtype=torch.bool, device=adj.device)
    k_max = int(n_add.max()) if B else 0
    if k_max > 0:
        scores = uniform.view(B, -1).masked_fill(~candidates.view(B, -1), -1.0)
        picked = scores.topk(k_max, dim=1).indices                               # uniform without replacement
        take = torch.arange(k_max, device=adj.device)[None, :] < n_add[:, None]
        added.scatter_(1, picked, take)
    added = added.view(B, T, T)
    if symmetric:
        keep, added = keep | keep.transpose(1, 2), added | added.transpose(1, 2)
    if weight is None:
        return keep | added, (keep | added).to(torch.get_default_dtype())
    kf = keep.to(weight.dtype)
    n_kept = kf.sum((1, 2))
    mean_kept = torch.where(n_kept > 0, (weight * kf).sum((1, 2)) / n_kept.clamp_min(1.0), torch.ones_like(n_kept))
    new_weight = weight * kf + mean_kept[:, None, None] * added.to(weight.dtype)
    return keep | added, new_weight


def edges_from_adjacency(adj: torch.Tensor, weight: torch.Tensor | None, nodes_per_sample: int, slot: int, dtype=None):
    """Edge list of a batch of dense graphs ``adj[B, T, T]`` (``adj[b, i, j]``: j sends to i).

    Node ``(b, i)`` has the global id ``b * nodes_per_sample + slot + i``. Returns ``(source[E], target[E],
    weight[E])``: ``weight[b, i, j]`` of a dense ``[B, T, T]`` weight matrix, ones for ``weight=None``.
    """
    b, i, j = adj.nonzero().unbind(1)
    first = b * nodes_per_sample + slot
    if weight is None:
        return first + j, first + i, torch.ones(b.shape, device=b.device, dtype=dtype or torch.get_default_dtype())
    return first + j, first + i, weight[b, i, j]


def mask_nodes(mask: torch.Tensor, nodes_per_sample: int, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real slots of ``mask[B, T]``: ``(flat index b*T + i, sample b, global node id)``."""
    T = mask.shape[1]
    k = mask.reshape(-1).nonzero().squeeze(1)
    b = torch.div(k, T, rounding_mode="floor")
    return k, b, k + b * (nodes_per_sample - T) + slot


class SSUTextGuidedGraph(nn.Module):
    """Eq. 3-5 for one modality: frame graph from text-attention rows with a learnable threshold.

    ``forward(x[B, Tm, d], mask[B, Tm], guide[B, Tg, d], guide_mask[B, Tg])`` returns
    ``(edges bool [B, Tm, Tm], values [B, Tm, Tm])`` where ``values`` is the post-mask matrix A^m.
    """

    def __init__(self, config: SSUConfig):
        super().__init__()
        d, dp = config.hidden_size, config.graph_proj_dim
        self.similarity = config.graph_similarity
        self.soft_temp = float(config.threshold_soft_temp)
        self.relaxation = config.threshold_relaxation
        # Unit-gain W_Q, W_K (SignalLinear): with std-0.02 weights every text-attention row started uniform
        # (max probability 0.023 against 0.020 over 50 tokens), the graphs were purely positional and W_Q,
        # W_K got ~1/400 of the GAT's relative gradient.
        self.query = SignalLinear(d, dp, bias=False)                              # W_Q
        self.key = SignalLinear(d, dp, bias=False)                                # W_K
        self.position_bias = nn.Parameter(torch.zeros(config.pos_bias_max_distance + 1))   # B_pos by |i - j|
        # One element each, not 0-dim tensors: FSDP2 (`fully_shard`) cannot shard a scalar parameter.
        self.scale_raw = nn.Parameter(torch.zeros(1))                             # s = softplus(scale_raw)
        self.threshold_lambda = nn.Parameter(torch.zeros(1))                      # lambda of Eq. 5

    def distance_bias(self, T: int, device) -> torch.Tensor:
        pos = torch.arange(T, device=device)
        dist = (pos[:, None] - pos[None, :]).abs().clamp_max(self.position_bias.shape[0] - 1)
        return self.position_bias[dist]                                           # [T, T]

    def base_adjacency(self, x, mask, guide, guide_mask, pairs=None) -> torch.Tensor:
        """Symmetric pre-threshold matrix A0 (Eq. 3-4) ``[B, Tm, Tm]``, exactly zero on padding and the diagonal."""
        Tm = x.shape[1]
        bias = self.distance_bias(Tm, x.device)
        if self.similarity == "literal_aligned":
            if guide.shape[1] != Tm:
                raise ValueError(
                    'graph_similarity="literal_aligned" needs word-aligned inputs (as many frames as text tokens); '
                    f'got {Tm} frames and {guide.shape[1]} tokens. Use graph_similarity="attention_rows".'
                )
            sim = self.scores(x, guide) + bias
        else:
            # R: each frame's attention over the real text tokens. A sample without any attends to its zeroed
            # padding instead: identical uniform rows, so every similarity is the same constant and the row
            # softmax below sees the bias alone.
            guide_mask = guide_mask | ~guide_mask.any(1, keepdim=True)
            rows = torch.softmax(self.scores(x, guide, guide_mask), dim=-1)       # [B, Tm, Tg]
            # Softmax rows are never zero, so the norm needs no guard.
            rows = rows / torch.linalg.vector_norm(rows, dim=-1, keepdim=True)
            sim = F.softplus(self.scale_raw) * (rows @ rows.transpose(1, 2)) + bias   # s cos(R_i, R_j) + B_pos
        # Only pairs of real nodes: the diagonal is left out too (self-similarity is always maximal; without it
        # each row is a distribution over neighbours). Rows without a pair (padding, a sample with fewer than
        # two real nodes) are zero.
        probs = masked_softmax(sim, pair_mask(mask) if pairs is None else pairs, dim=-1)
        return 0.5 * (probs + probs.transpose(1, 2))                              # Eq. 4

    def scores(self, x: torch.Tensor, guide: torch.Tensor, guide_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3 without B_pos: ``(x W_Q)(g W_K)^T / sqrt(d')`` -> ``[B, Tm, Tg]``.

        With ``guide_mask``, padded guide tokens get a large negative score.
        """
        scores = self.query(x) @ self.key(guide).transpose(1, 2) / math.sqrt(self.query.out_features)
        if guide_mask is None:
            return scores
        return scores + additive_mask(guide_mask, scores.dtype)[:, None, :]

    def forward(self, x, mask, guide, guide_mask, pairs=None):
        pairs = pair_mask(mask, x.dtype) if pairs is None else pairs
        a0 = self.base_adjacency(x, mask, guide, guide_mask, pairs)
        return adaptive_threshold(a0, pairs, self.threshold_lambda, self.soft_temp, self.relaxation)


class NodeLayout(NamedTuple):
    """Node tensor ``x [B * per_sample, d]`` and where each modality's slots and anchor slot sit in a sample.

    Every sample has ``per_sample`` node slots: the slots of each modality (``slots[m]`` onwards, ``lengths[m]``
    of them, padded ones included), then one anchor slot per modality (``anchor_slots[m]``) when the anchor
    is on. Node id = ``b * per_sample + slot``.
    """

    x: torch.Tensor
    lengths: dict[str, int]
    slots: dict[str, int]
    anchor_slots: dict[str, int]
    per_sample: int


@dataclass
class SSUGraphs:
    """Batched graphs of one forward pass, all over the node tensor of ``layout``.

    ``modality_*``: the per-modality graphs (modality m's nodes linked to its own anchor slot);
    ``augmented_*``: the same with perturbed intra-modality edges (training, else ``None``); ``fusion_*``: the
    fusion graph (every modality linked to the first anchor slot, plus cross-modal edges). ``edge_index`` is
    ``[2, E]`` (source, target), ``edge_attr`` ``[E, 1]``. Padded slots and unused anchor slots have no edge.
    ``adjacency[m]``: modality m's intra-modality graph, dense bool ``[B, T_m, T_m]`` (``adj[b, i, j]``: j sends
    to i); ``edge_values[m]``: its weights A^m (None for text, whose arcs weigh 1); ``anchor_weights[m]``: beta
    of Eq. 7, ``[B, T_m]``; ``cross_modal_links``: the fusion graph's cross-modal links.
    """

    layout: NodeLayout
    masks: dict[str, torch.Tensor]
    modality_edge_index: torch.Tensor
    modality_edge_attr: torch.Tensor
    fusion_edge_index: torch.Tensor
    fusion_edge_attr: torch.Tensor
    augmented_edge_index: torch.Tensor | None
    augmented_edge_attr: torch.Tensor | None
    adjacency: dict[str, torch.Tensor]
    edge_values: dict[str, torch.Tensor | None]
    anchor_weights: dict[str, torch.Tensor]
    cross_modal_links: CrossModalLinks

    @property
    def x(self) -> torch.Tensor:
        return self.layout.x

    @property
    def lengths(self) -> dict[str, int]:
        return self.layout.lengths

    @property
    def slots(self) -> dict[str, int]:
        return self.layout.slots

    @property
    def anchor_slots(self) -> dict[str, int]:
        return self.layout.anchor_slots

    @property
    def nodes_per_sample(self) -> int:
        return self.layout.per_sample

    @property
    def fusion_anchor_slot(self) -> int | None:
        return next(iter(self.layout.anchor_slots.values()), None)


def node_layout(nodes: dict, z_anchor: torch.Tensor, use_anchor: bool) -> NodeLayout:
    """Node slots of each sample (modalities in config order, then one anchor slot per modality) and the
    node tensor ``x [B * nodes_per_sample, d]`` in that order, written in one copy."""
    B, d = z_anchor.shape
    modalities = list(nodes)
    lengths = {m: nodes[m].shape[1] for m in modalities}
    slots, start = {}, 0
    for m in modalities:
        slots[m], start = start, start + lengths[m]
    anchor_slots = {m: start + k for k, m in enumerate(modalities)} if use_anchor else {}
    per_sample = start + len(anchor_slots)
    parts = [nodes[m] for m in modalities]
    if anchor_slots:
        parts.append(z_anchor[:, None, :].expand(B, len(anchor_slots), d))
    x = torch.cat(parts, dim=1).reshape(B * per_sample, d)
    return NodeLayout(x, lengths, slots, anchor_slots, per_sample)


def anchor_free_scores(nodes: dict, masks: dict, layout: NodeLayout) -> torch.Tensor:
    """Without the anchor (ablation): each node's affinity to the other modalities, ``H_i^m . c^{-m} / sqrt(d)``
    with ``c^{-m}`` the mean node state of the other modalities -> ``[B, N]`` over the node slots. It ranks
    the fusion graph's cross-modal candidates with neither ``z_a`` nor ``W_a``."""
    modalities = list(nodes)
    B, d = nodes[modalities[0]].shape[0], layout.x.shape[-1]
    means = {m: masked_mean(nodes[m], masks[m]) for m in modalities}
    present = {m: masks[m].any(1, keepdim=True).to(layout.x.dtype) for m in modalities}
    scores = layout.x.new_zeros(B, layout.per_sample)
    for m in modalities:
        others = [j for j in modalities if j != m]
        weight = sum(present[j] for j in others) if others else None
        if weight is None:
            continue
        context = sum(means[j] * present[j] for j in others) / weight.clamp_min(1.0)      # [B, d]
        slot = layout.slots[m]
        scores[:, slot:slot + layout.lengths[m]] = torch.einsum("btd,bd->bt", nodes[m], context) / math.sqrt(d)
    return scores


def assemble_graphs(layout: NodeLayout, masks, adjacency, values, anchor_weights, config, augment: bool) -> SSUGraphs:
    """The batched edge lists of the modality, fusion and (``augment``) augmented graphs over ``layout``'s nodes.

    ``adjacency[m]`` (dense bool ``[B, T_m, T_m]``) and ``values[m]`` (its weights, or None for weight 1) are
    modality m's intra-modality graph; ``anchor_weights[m]`` is its beta of Eq. 7.
    """
    modalities = list(masks)
    x, slots, anchor_slots, per_sample = layout.x, layout.slots, layout.anchor_slots, layout.per_sample
    dtype, device = x.dtype, x.device
    own, intra, fusion_only, aug = [], [], [], []                        # (source, target, weight) chunks
    counts = {m: masks[m].sum(1).to(dtype) for m in modalities}         # real nodes per sample
    for m in modalities:
        # Weights are rescaled by the sample's node count so a uniform graph weighs about 1, like text arcs.
        weight = None if values[m] is None else values[m] * counts[m][:, None, None]
        intra.append(edges_from_adjacency(adjacency[m], weight, per_sample, slots[m], dtype=dtype))
        if augment:
            aug_adj, aug_w = augment_adjacency(
                adjacency[m], weight, pair_mask(masks[m]), float(config.aug_edge_drop), float(config.aug_edge_add),
                symmetric=not (m == "text" and config.text_graph_directed),
            )
            aug.append(edges_from_adjacency(aug_adj, aug_w, per_sample, slots[m], dtype=dtype))
    if anchor_slots:
        node, anchor, w = anchor_edges(anchor_weights, masks, counts, slots, anchor_slots, per_sample)
        own += [(node, anchor, w), (anchor, node, w)]
        if augment:
            aug += own
        # In the fusion graph every modality's nodes link to the sample's first anchor slot instead.
        fusion_anchor = anchor - anchor % per_sample + next(iter(anchor_slots.values()))
        fusion_only += [(node, fusion_anchor, w), (fusion_anchor, node, w)]
    links = cross_modal_links(anchor_weights, masks, int(config.fusion_topk))
    fusion_only += cross_modal_edges(links, slots, per_sample)
    # CODEPATH: primary_modality (benchmarks/real_multimodal.py's ssu_tav) makes the fusion graph one-way; the
    # default configs keep every fusion edge in both directions.
    if config.primary_modality is not None:
        fusion_only = edges_out_of(fusion_only, layout, config.primary_modality)

    modality_edge_index, modality_edge_attr = pack_edges(own + intra, dtype, device)
    fusion_edge_index, fusion_edge_attr = pack_edges(intra + fusion_only, dtype, device)
    augmented_edge_index, augmented_edge_attr = pack_edges(aug, dtype, device) if augment else (None, None)
    return SSUGraphs(
        layout=layout, masks=masks,
        modality_edge_index=modality_edge_index, modality_edge_attr=modality_edge_attr,
        fusion_edge_index=fusion_edge_index, fusion_edge_attr=fusion_edge_attr,
        augmented_edge_index=augmented_edge_index, augmented_edge_attr=augmented_edge_attr,
        adjacency=adjacency, edge_values=values, anchor_weights=anchor_weights, cross_modal_links=links,
    )


def edges_out_of(chunks, layout: NodeLayout, modality: str) -> list:
    """``chunks`` of fusion edges less those from another modality's node into ``modality``'s nodes or the
    fusion anchor (the first anchor slot, which holds ``modality``'s mean when it guides): messages leave
    ``modality`` but none come back, so its nodes are updated as in its own model."""
    start, stop = layout.slots[modality], layout.slots[modality] + layout.lengths[modality]
    anchor = next(iter(layout.anchor_slots.values()), None)

    def on_its_side(ids):
        slot = ids % layout.per_sample
        side = (slot >= start) & (slot < stop)
        return side if anchor is None else side | (slot == anchor)

    kept = []
    for source, target, weight in chunks:
        keep = on_its_side(source) | ~on_its_side(target)
        kept.append((source[keep], target[keep], weight[keep]))
    return kept


def pack_edges(chunks, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target, weight) chunks -> ``edge_index [2, E]`` and ``edge_attr [E, 1]``."""
    if not chunks:
        return torch.empty(2, 0, dtype=torch.long, device=device), torch.empty(0, 1, dtype=dtype, device=device)
    edge_index = torch.stack([torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])])
    edge_attr = torch.cat([c[2].to(dtype) for c in chunks]).unsqueeze(-1)
    return edge_index, edge_attr


def anchor_edges(anchor_weights, masks, counts, slots, anchor_slots, per_sample):
    """Every real node and its modality's anchor slot (Eq. 7): ``(node ids, anchor ids, weights)``, each ``[E]``.

    The modalities' slots are consecutive, so their masks side by side index the node slots directly.
    Weights ``beta_i * n_m`` (n_m real nodes of the sample's modality m) average 1, like text arcs.
    """
    mask = torch.cat([masks[m] for m in slots], dim=1)                       # [B, sum T_m]
    beta = torch.cat([anchor_weights[m] for m in slots], dim=1)
    scale = torch.cat([counts[m][:, None].expand_as(masks[m]) for m in slots], dim=1)
    anchor_of_slot = torch.cat([torch.full((masks[m].shape[1],), anchor_slots[m], device=mask.device) for m in slots])
    k, b, node = mask_nodes(mask, per_sample, 0)
    slot = node - b * per_sample
    anchor = b * per_sample + anchor_of_slot.index_select(0, slot)
    return node, anchor, beta.reshape(-1).index_select(0, k) * scale.reshape(-1).index_select(0, k)


class CrossModalLinks(NamedTuple):
    """The fusion graph's cross-modal links (iii), each undirected link once, all ``[L]``.

    ``sample``; ``modality_a`` / ``modality_b``: indices of the two modalities in config order (a before b);
    ``node_a`` / ``node_b``: each end's node index within its modality; ``weight``: the edge weight.
    """

    sample: torch.Tensor
    modality_a: torch.Tensor
    node_a: torch.Tensor
    modality_b: torch.Tensor
    node_b: torch.Tensor
    weight: torch.Tensor


def cross_modal_links(anchor_weights, masks, k: int) -> CrossModalLinks:
    """Fusion edges (iii): the top-k anchor-affine nodes of every two modalities, fully linked.

    A link weighs the mean of its ends' ``beta / max beta``; none without two modalities or with ``k = 0``.
    """
    modalities = list(masks)
    M = len(modalities)
    ref = anchor_weights[modalities[0]]
    B, device = ref.shape[0], ref.device
    if k == 0 or M < 2:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return CrossModalLinks(empty, empty, empty, empty, empty, ref.new_empty(0))
    # Every modality's weights side by side, -1 on padding, so one top-k serves all of them.
    beta = ref.new_full((B, M, max(masks[m].shape[1] for m in modalities)), -1.0)
    for j, m in enumerate(modalities):
        beta[:, j, :masks[m].shape[1]] = anchor_weights[m].masked_fill(~masks[m], -1.0)
    top, idx = beta.topk(min(k, beta.shape[2]), dim=2)                        # [B, M, k]
    weights = top / beta.amax(2, keepdim=True).clamp_min(1e-12)
    valid = top >= 0
    a, b = torch.triu_indices(M, M, 1, device=device)                        # every pair of modalities
    linked = valid.index_select(1, a)[..., None] & valid.index_select(1, b)[:, :, None, :]   # [B, pairs, k, k]
    keep = linked.reshape(-1).nonzero().squeeze(1)
    per_sample = linked[0].numel()
    pair = torch.div(keep % per_sample, linked.shape[2] * linked.shape[3], rounding_mode="floor")
    node_a = idx.index_select(1, a)[..., None].expand(linked.shape).reshape(-1).index_select(0, keep)
    node_b = idx.index_select(1, b)[:, :, None, :].expand(linked.shape).reshape(-1).index_select(0, keep)
    w = (0.5 * (weights.index_select(1, a)[..., None] + weights.index_select(1, b)[:, :, None, :])).reshape(-1)
    sample = torch.div(keep, per_sample, rounding_mode="floor")
    return CrossModalLinks(sample, a.index_select(0, pair), node_a, b.index_select(0, pair), node_b, w.index_select(0, keep))


def cross_modal_edges(links: CrossModalLinks, slots, per_sample) -> list:
    """The fusion graph's edges of ``links``, both ways: ``[(source, target, weight), (target, source, weight)]``
    over the node ids of a layout with ``slots`` and ``per_sample`` node slots per sample."""
    if links.sample.numel() == 0:
        return []
    first = torch.tensor(list(slots.values()), device=links.sample.device)
    base = links.sample * per_sample
    src = base + first.index_select(0, links.modality_a) + links.node_a
    dst = base + first.index_select(0, links.modality_b) + links.node_b
    return [(src, dst, links.weight), (dst, src, links.weight)]
