"""SSU: graph invariants, losses, gradients, save / load, remote code, missing modalities, learning."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from graph_reference import undirected_head_graph
from isolation import without_package
from training_loops import train_epoch, trained_on
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertConfig

from hf_mmfusion import SSUConfig, SSUForSequenceClassification, SSUModel
from hf_mmfusion.models.graphs_ssu import (
    adaptive_threshold,
    augment_adjacency,
    chain_heads_from_mask,
    head_arcs,
    heads_adjacency,
    pair_mask,
)
from hf_mmfusion.models.modeling_ssu import info_nce, polarity_classes

os.environ.setdefault("HF_HUB_OFFLINE", "1")

A_DIM, V_DIM, VOCAB = 5, 7, 99


def tiny_config(**overrides) -> SSUConfig:
    text = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    kwargs = dict(
        text_config=text.to_dict(), hidden_size=16, graph_proj_dim=16, audio_input_dim=A_DIM, visual_input_dim=V_DIM,
        num_labels=1, gat_heads=2, cross_attn_heads=2, fusion_topk=3, pos_bias_max_distance=6,
    )
    kwargs.update(overrides)
    if "text" not in kwargs.get("modalities", ["text"]):
        kwargs.pop("text_config")
    return SSUConfig(**kwargs)


def make_batch(B=3, T=8, Ta=6, Tv=9, seed=0, modalities=("text", "audio", "visual")):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    if "text" in modalities:
        ids = torch.randint(1, VOCAB, (B, T), generator=g)
        mask = torch.ones(B, T, dtype=torch.long)
        lengths = [T, T - 3, T - 1, T - 2][:B] + [T] * max(0, B - 4)
        for b, n in enumerate(lengths):
            mask[b, n:] = 0
        ids = ids * mask
        # Each real token's head: a random earlier real token (0 -> root); CLS / SEP get -1.
        heads = torch.full((B, T), -1, dtype=torch.long)
        for b, n in enumerate(lengths):
            for i in range(2, n - 1):
                heads[b, i] = int(torch.randint(1, i, (1,), generator=g))
        batch.update(input_ids=ids, attention_mask=mask, dependency_heads=heads)
    for name, dim, length in (("audio", A_DIM, Ta), ("visual", V_DIM, Tv)):
        if name not in modalities:
            continue
        mask = torch.ones(B, length, dtype=torch.long)
        mask[1 % B, length // 2:] = 0
        batch[f"{name}_features"] = torch.randn(B, length, dim, generator=g)
        batch[f"{name}_attention_mask"] = mask
    batch["labels"] = torch.tensor([1.2, -0.4, 0.0, 2.5])[:B]
    return batch


def inputs_of(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def real_graphs(model, batch, augment=False):
    """Run the model's encoders and graph construction; returns the SSUGraphs object."""
    base = model.ssu if hasattr(model, "ssu") else model
    captured = {}
    original = base.construct_graphs

    def spy(states, masks, heads=None, augment=False):
        captured["graphs"] = original(states, masks, heads, augment=augment)
        return captured["graphs"]

    base.construct_graphs = spy
    try:
        base.train(augment)
        if augment:
            base.config.lambda_self = max(base.config.lambda_self, 0.1)
        base(**inputs_of(batch))
    finally:
        base.construct_graphs = original
    return captured["graphs"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SSUForSequenceClassification(tiny_config()).eval()


# --------------------------------------------------------------------------------------------------
# Graph construction invariants
# --------------------------------------------------------------------------------------------------


def test_adjacencies_symmetric_and_never_touch_padding(model):
    batch = make_batch()
    out = model(**inputs_of(batch), output_graphs=True)
    for name, mask in (("adjacency_audio", "audio_attention_mask"), ("adjacency_visual", "visual_attention_mask"),
                       ("text_adjacency", "attention_mask")):
        adj, valid = out[name], batch[mask].bool()
        torch.testing.assert_close(adj, adj.transpose(1, 2))
        outside = ~(valid[:, :, None] & valid[:, None, :])
        assert (adj[outside] == 0).all(), name
        assert (torch.diagonal(adj, dim1=1, dim2=2) == 0).all()
        assert (adj > 0).any(), f"{name} has no edge at all"
    for m in ("text", "audio", "visual"):
        beta = out[f"anchor_weights_{m}"]
        valid = batch["attention_mask" if m == "text" else f"{m}_attention_mask"].bool()
        assert (beta[~valid] == 0).all()
        torch.testing.assert_close(beta.sum(1), torch.ones(beta.shape[0]))


def node_ids(graphs, m, b, only_real=True):
    """Node ids of modality m's slots in sample b (real ones only by default)."""
    idx = torch.arange(graphs.lengths[m])
    if only_real:
        idx = idx[graphs.masks[m][b]]
    return (b * graphs.nodes_per_sample + graphs.slots[m] + idx).tolist()


def test_edge_lists_keep_padding_isolated(model):
    batch = make_batch()
    graphs = real_graphs(model, batch, augment=True)
    B, per = batch["input_ids"].shape[0], graphs.nodes_per_sample
    assert graphs.x.shape == (B * per, model.config.hidden_size)
    assert per == sum(graphs.lengths.values()) + 3                                   # one anchor slot per modality
    real = torch.zeros(B * per, dtype=torch.bool)
    for b in range(B):
        for m in graphs.lengths:
            real[node_ids(graphs, m, b)] = True
            real[b * per + graphs.anchor_slots[m]] = True
    for edge_index in (graphs.modality_edge_index, graphs.augmented_edge_index, graphs.fusion_edge_index):
        assert real[edge_index].all()                                                # padding never linked
        assert (edge_index[0] != edge_index[1]).all()                               # self loops come from GATConv
        assert (edge_index[0] // per == edge_index[1] // per).all()                 # never across samples
    # The modality graphs keep modalities apart; only the fusion graph crosses them.
    slot_modality = torch.full((per,), -1)
    for k, m in enumerate(graphs.lengths):
        slot_modality[graphs.slots[m]:graphs.slots[m] + graphs.lengths[m]] = k
        slot_modality[graphs.anchor_slots[m]] = k
    src, dst = slot_modality[graphs.modality_edge_index % per]
    assert torch.equal(src, dst)
    fsrc, fdst = graphs.fusion_edge_index % per
    assert (slot_modality[fsrc] != slot_modality[fdst]).any()


def test_pruned_edges_are_exactly_those_under_tau(model):
    batch = make_batch(B=4, Ta=10)
    base = model.ssu
    graphs = real_graphs(model, batch)
    with torch.no_grad():
        states = {}
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        text = base.text_encoder.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        states["text"] = base.norms["text"](base.projections["text"](text)) * mask[..., None]
        x, amask = base._encode_frames("audio", batch["audio_features"], batch["audio_attention_mask"].bool())
        builder = base.graph_builders["audio"]
        a0 = builder.base_adjacency(x, amask, states["text"], mask)
    pairs = pair_mask(amask)
    lam = builder.threshold_lambda.item()
    for b in range(4):
        vals = a0[b][pairs[b]]
        mu, sigma = vals.mean(), vals.std(unbiased=False)
        tau = mu + lam * sigma
        temp = 0.1 * torch.maximum(sigma, mu / 100)
        # The default "band" relaxation keeps pairs down to three temperatures below tau, faded by the soft mask.
        expected = (a0[b] >= tau - 3 * temp) & pairs[b]
        assert torch.equal(graphs.adjacency["audio"][b], expected)
        assert 0 < expected.sum() < pairs[b].sum()                                  # something pruned, something kept
        torch.testing.assert_close(graphs.edge_values["audio"][b], a0[b] * expected * torch.sigmoid((a0[b] - tau) / temp))


@pytest.mark.parametrize("graph_proj_dim", [16, 8])
def test_base_adjacency_equals_the_masked_reference(graph_proj_dim):
    """The fused computation (masks as additive biases, scale inside the product) equals Eq. 3-4 written
    plainly, including a sample without text, one with a single frame, and a low-rank projection."""
    from hf_mmfusion.models.graphs_ssu import SSUTextGuidedGraph
    from hf_mmfusion.models.masking import masked_softmax

    torch.manual_seed(0)
    builder = SSUTextGuidedGraph(tiny_config(graph_proj_dim=graph_proj_dim))
    with torch.no_grad():
        builder.position_bias.normal_()
        builder.scale_raw.fill_(1.5)
    B, Tm, Tg, d = 4, 7, 5, 16
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6, [1] * 6 + [0]]).bool()
    guide_mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 2 + [0] * 3, [0] * 5]).bool()
    x = torch.randn(B, Tm, d) * mask[..., None]
    guide = torch.randn(B, Tg, d) * guide_mask[..., None]

    rows = torch.nn.functional.normalize(masked_softmax(builder.scores(x, guide), guide_mask[:, None, :]), dim=-1)
    sim = torch.nn.functional.softplus(builder.scale_raw) * rows @ rows.mT + builder.distance_bias(Tm, x.device)
    probs = masked_softmax(sim, pair_mask(mask))
    expected = 0.5 * (probs + probs.mT)

    a0 = builder.base_adjacency(x, mask, guide, guide_mask)
    torch.testing.assert_close(a0, expected)
    assert torch.equal(a0 != 0, expected != 0)                                   # exact zeros off the real pairs
    assert (a0[2] == 0).all()                                                   # one frame: no pair at all


@pytest.mark.parametrize("graph_proj_dim", [16, 8])
@pytest.mark.parametrize("frames, tokens", [(7, 5), (5, 7), (6, 6)])
def test_scores_equal_the_projected_product(graph_proj_dim, frames, tokens):
    """Eq. 3 scores (x W_Q)(g W_K)^T / sqrt(d'), whichever side the fused d x d product is applied to."""
    from hf_mmfusion.models.graphs_ssu import SSUTextGuidedGraph

    torch.manual_seed(0)
    builder = SSUTextGuidedGraph(tiny_config(graph_proj_dim=graph_proj_dim))
    x, guide = torch.randn(3, frames, 16), torch.randn(3, tokens, 16)
    expected = builder.query(x) @ builder.key(guide).mT / graph_proj_dim ** 0.5
    torch.testing.assert_close(builder.scores(x, guide), expected)
    guide_mask = torch.rand(3, tokens) > 0.3
    masked = builder.scores(x, guide, guide_mask)
    torch.testing.assert_close(masked[guide_mask[:, None, :].expand_as(masked)],
                               expected[guide_mask[:, None, :].expand_as(expected)])
    assert (masked[~guide_mask[:, None, :].expand_as(masked)] < -1e6).all()


def test_threshold_straight_through_and_degenerate_sigma():
    torch.manual_seed(0)
    pairs = pair_mask(torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool())
    a0 = (torch.rand(2, 5, 5) * pairs).requires_grad_()                          # zero off the real pairs
    lam = torch.tensor(0.3, requires_grad=True)
    edges, values = adaptive_threshold(a0, pairs, lam, 0.1, "straight_through")
    torch.testing.assert_close(values.detach(), a0.detach() * edges)
    values.sum().backward()
    assert lam.grad is not None and lam.grad.abs() > 0
    # A constant matrix (sigma = 0): every real pair passes and gradients stay finite.
    all_pairs = pair_mask(torch.ones(1, 4, dtype=torch.bool))
    flat = (torch.full((1, 4, 4), 0.25) * all_pairs).requires_grad_()
    lam2 = torch.tensor(0.5, requires_grad=True)
    edges, values = adaptive_threshold(flat, all_pairs, lam2, 0.1, "straight_through")
    assert edges.sum() == 12
    values.sum().backward()
    assert torch.isfinite(flat.grad).all() and torch.isfinite(lam2.grad)


@pytest.mark.parametrize("relaxation", ["band", "straight_through"])
def test_threshold_gradient_stays_bounded_on_near_constant_graphs(relaxation):
    # sigma ~ 5e-8: an absolute 1e-6 floor on the soft-mask temperature gave |dA| ~ 1e5 here.
    pairs = pair_mask(torch.ones(1, 6, dtype=torch.bool))
    a0 = ((0.2 + 1e-7 * torch.randn(1, 6, 6, generator=torch.Generator().manual_seed(0))) * pairs).requires_grad_()
    lam = torch.tensor(0.5, requires_grad=True)
    _, values = adaptive_threshold(a0, pairs, lam, 0.1, relaxation)
    values.sum().backward()
    assert a0.grad.abs().max() < 1e3 and lam.grad.abs() < 1e3


def test_band_relaxation_gives_lambda_gradient_from_both_sides_of_tau():
    torch.manual_seed(0)
    pairs = pair_mask(torch.ones(1, 8, dtype=torch.bool))
    a0 = torch.rand(1, 8, 8) * pairs
    a0 = 0.5 * (a0 + a0.mT)
    lam = torch.tensor(0.5, requires_grad=True)
    edges, values = adaptive_threshold(a0, pairs, lam, 0.5, "band")
    vals = a0[pairs]
    tau = vals.mean() + 0.5 * vals.std(unbiased=False)
    below = edges & (a0 < tau)
    assert below.any()                                          # the band keeps pairs just under tau ...
    (values * below).sum().backward()                           # ... and they alone reach lambda
    assert lam.grad < 0                                         # raising tau fades them further
    lam.grad = None
    st_edges, st_values = adaptive_threshold(a0, pairs, lam, 0.5, "straight_through")
    assert not (st_edges & below).any()                         # the hard mask drops them from the graph,
    (st_values * st_edges * below).sum().backward()             # so through the GAT they reach nothing
    assert lam.grad == 0


def test_anchor_links_every_real_node_of_every_modality(model):
    batch = make_batch()
    graphs = real_graphs(model, batch)
    B, per = batch["input_ids"].shape[0], graphs.nodes_per_sample
    src, dst = graphs.modality_edge_index
    fsrc, fdst = graphs.fusion_edge_index
    fusion_anchor = graphs.fusion_anchor_slot
    for b in range(B):
        every_real = set()
        for m in graphs.lengths:
            anchor = b * per + graphs.anchor_slots[m]
            nodes = set(node_ids(graphs, m, b))
            assert set(src[dst == anchor].tolist()) == nodes == set(dst[src == anchor].tolist())
            every_real |= nodes
        anchor = b * per + fusion_anchor
        assert set(fsrc[fdst == anchor].tolist()) == every_real == set(fdst[fsrc == anchor].tolist())
    # Anchor edge weights: beta rescaled by the modality's real node count.
    m = "audio"
    b = 1
    anchor = b * per + graphs.anchor_slots[m]
    into = dst == anchor
    beta = graphs.anchor_weights[m][b][graphs.masks[m][b]] * graphs.masks[m][b].sum()
    torch.testing.assert_close(graphs.modality_edge_attr[into, 0], beta)


def test_fusion_cross_edges_link_topk_anchor_nodes(model):
    batch = make_batch()
    graphs = real_graphs(model, batch)
    per, k = graphs.nodes_per_sample, model.config.fusion_topk
    slot_modality = {}
    for m, s in graphs.slots.items():
        for i in range(graphs.lengths[m]):
            slot_modality[s + i] = (m, i)
    src, dst = graphs.fusion_edge_index
    for b in range(batch["input_ids"].shape[0]):
        cross = set()
        for s, t in zip(src.tolist(), dst.tolist()):
            if s // per != b or s % per not in slot_modality or t % per not in slot_modality:
                continue
            (ms, i), (mt, _) = slot_modality[s % per], slot_modality[t % per]
            if ms != mt:
                cross.add((ms, i))
        top = set()
        for m in graphs.lengths:
            beta = graphs.anchor_weights[m][b].masked_fill(~graphs.masks[m][b], -1)
            n = min(k, int(graphs.masks[m][b].sum()))
            top |= {(m, i) for i in beta.topk(n).indices.tolist()}
        assert cross == top


def test_anchorless_ablation_has_no_anchor_edges():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(use_anchor=False)).eval()
    graphs = real_graphs(m, make_batch())
    assert graphs.anchor_slots == {} and graphs.nodes_per_sample == sum(graphs.lengths.values())
    for edge_index in (graphs.modality_edge_index, graphs.fusion_edge_index):
        assert edge_index.max() < graphs.x.shape[0]


def test_text_graph_is_the_dependency_arcs(model):
    batch = make_batch()
    out = model(**inputs_of(batch), output_graphs=True)
    heads, mask = batch["dependency_heads"], batch["attention_mask"]
    for b in range(heads.shape[0]):
        assert torch.equal(out.text_adjacency[b], undirected_head_graph(heads[b], mask[b], out.text_adjacency[b]))


def test_chain_and_directed_text_graphs():
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 0, 0]]).bool()
    heads = chain_heads_from_mask(mask)
    assert heads.tolist() == [[-1, -1, 1, -1, 2, 4], [-1, 0, 1, 2, -1, -1]]
    directed = heads_adjacency(torch.tensor([[-1, 0, 0, 1]]), torch.ones(1, 4, dtype=torch.bool), directed=True)
    # adj[b, i, j] means j sends to i: head -> dependent.
    assert directed[0].nonzero().tolist() == [[1, 0], [2, 0], [3, 1]]


@pytest.mark.parametrize("directed", [False, True])
def test_head_arcs_are_each_link_once(directed):
    """Arcs straight from head indices equal the dense rule (token i and its head, both real, no self loop,
    undirected arcs both ways) with every link listed once, also where two tokens are each other's head."""
    torch.manual_seed(0)
    B, T = 64, 9
    mask = torch.rand(B, T) < 0.8
    heads = torch.randint(-1, T, (B, T))
    heads[:, 3], heads[:, 4] = 4, 3                                              # mutual heads in every row
    heads[:, 5] = 5                                                               # a token headed by itself
    b, i, j = head_arcs(heads, mask, directed=directed)
    expected = torch.zeros(B, T, T, dtype=torch.bool)
    for bb in range(B):
        for ii, h in enumerate(heads[bb].tolist()):
            if h >= 0 and h != ii and mask[bb, ii] and mask[bb, h]:
                expected[bb, ii, h] = True
                if not directed:
                    expected[bb, h, ii] = True
    listed = torch.zeros(B, T, T, dtype=torch.long).index_put_((b, i, j), torch.ones_like(b), accumulate=True)
    assert torch.equal(listed, expected.long())                                  # every link, each exactly once
    assert torch.equal(heads_adjacency(heads, mask, directed=directed), expected)
    assert (mask[:, 3] & mask[:, 4]).any()                                       # the mutual case did occur


def test_augmented_view_drop_and_add_rates():
    torch.manual_seed(0)
    B, T, drop, add = 400, 20, 0.2, 0.1
    mask = torch.rand(B, T) < 0.9
    pairs = pair_mask(mask)
    upper = (torch.rand(B, T, T) < 0.3).triu(1)
    adj = (upper | upper.transpose(1, 2)) & pairs
    weight = torch.rand(B, T, T) * adj
    weight = weight + weight.transpose(1, 2)
    new_adj, new_w = augment_adjacency(adj, weight, pairs, drop, add, symmetric=True)
    assert torch.equal(new_adj, new_adj.transpose(1, 2)) and not (new_adj & ~pairs).any()
    kept, added = new_adj & adj, new_adj & ~adj
    n_edges = (adj.triu(1)).sum((1, 2))
    dropped_rate = 1 - (kept.triu(1).sum() / n_edges.sum()).item()
    assert abs(dropped_rate - drop) < 0.01                                         # ~22k edges: sd ~0.003
    expected_added = torch.ceil(add * n_edges.float()).long()
    assert torch.equal(added.triu(1).sum((1, 2)), expected_added)
    torch.testing.assert_close(new_w[kept], weight[kept])
    mean_kept = (weight * kept).sum((1, 2)) / kept.sum((1, 2))
    torch.testing.assert_close(new_w[added], mean_kept[:, None, None].expand(B, T, T)[added])
    # Added pairs are uniform over the candidates: every candidate pair position gets picked sometimes.
    candidate_hits = (added.sum(0) > 0) | ~(pairs & ~adj).any(0)
    assert candidate_hits.float().mean() > 0.95


def test_augmentation_seeded_and_training_only(model):
    batch = make_batch()
    torch.manual_seed(3)
    g1 = real_graphs(model, batch, augment=True)
    torch.manual_seed(3)
    g2 = real_graphs(model, batch, augment=True)
    assert torch.equal(g1.augmented_edge_index, g2.augmented_edge_index)
    assert not torch.equal(g1.augmented_edge_index, g1.modality_edge_index)
    # Anchor edges are never perturbed.
    per = g1.nodes_per_sample
    anchors = torch.tensor(list(g1.anchor_slots.values()))

    def anchor_edges(edge_index):
        hit = torch.isin(edge_index[0] % per, anchors) | torch.isin(edge_index[1] % per, anchors)
        return {tuple(e) for e in edge_index[:, hit].T.tolist()}

    assert anchor_edges(g1.augmented_edge_index) == anchor_edges(g1.modality_edge_index)
    g_eval = real_graphs(model, batch, augment=False)
    assert g_eval.augmented_edge_index is None
    model.eval()
    assert model(**batch).self_loss is None


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def test_info_nce_matches_direct_computation():
    torch.manual_seed(0)
    z1, z2, eta = torch.randn(5, 8), torch.randn(5, 8), 0.2
    expected = 0.0
    for i in range(5):
        sims = [torch.dot(z1[i], z2[j]) / (z1[i].norm() * z2[j].norm()) / eta for j in range(5)]
        expected += -math.log(math.exp(sims[i]) / sum(math.exp(s) for s in sims))
    torch.testing.assert_close(info_nce(z1, z2, eta), torch.tensor(expected / 5))
    assert info_nce(z1[:1], z2[:1], eta).item() == 0.0


def test_polarity_classes():
    y = torch.tensor([-0.0, 0.0, 0.5, -2.5, 2.5, -3.7, 1.5])
    assert polarity_classes(y, 3).tolist() == [1, 1, 2, 0, 2, 0, 2]
    assert polarity_classes(y, 2).tolist() == [1, 1, 1, 0, 1, 0, 1]
    assert polarity_classes(y, 7).tolist() == [3, 3, 3, 1, 5, 0, 5]              # half to even, clipped


def test_supervised_polarity_follows_the_boundary_of_the_label_scale():
    # ICT-MMMO ratings 1-5: >= 3.5 is positive. Around 0 every rating would be one class.
    ratings = torch.tensor([1.0, 3.0, 3.5, 4.5, 5.0])
    assert polarity_classes(ratings, 2, boundary=3.5).tolist() == [0, 0, 1, 1, 1]
    assert polarity_classes(ratings, 3, boundary=3.5).tolist() == [0, 0, 1, 2, 2]
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(sup_num_classes=2, sup_polarity_boundary=3.5)).eval()
    batch = make_batch(B=4)
    batch["labels"] = torch.tensor([1.0, 4.5, 2.0, 5.0])
    out = m(**batch)
    expected = torch.nn.functional.cross_entropy(m.classifier.supervised(out.z_ori), torch.tensor([0, 1, 0, 1]))
    torch.testing.assert_close(out.sup_loss, expected)
    with pytest.raises(ValueError, match="sup_polarity_boundary"):
        tiny_config(sup_num_classes=7, sup_polarity_boundary=3.5)


def test_loss_terms_and_total(model):
    batch = make_batch()
    model.train()
    torch.manual_seed(0)
    out = model(**batch)
    model.eval()
    for name in ("task_loss", "sup_loss", "self_loss", "align_loss"):
        assert torch.isfinite(out[name]) and out[name].ndim == 0
    cfg = model.config
    total = out.task_loss + cfg.lambda_sup * out.sup_loss + cfg.lambda_self * out.self_loss + cfg.lambda_align * out.align_loss
    torch.testing.assert_close(out.loss, total)
    torch.testing.assert_close(out.task_loss, (out.logits.squeeze(-1) - batch["labels"]).abs().mean())
    # Eq. 10 per coordinate by default; align_reduction="sum" is the squared norm as printed.
    squared_norm = (out.z_fuse - out.z_ori).square().sum(-1).mean()
    torch.testing.assert_close(out.align_loss, squared_norm / out.z_ori.shape[-1])
    model.config.align_reduction = "sum"
    try:
        torch.manual_seed(0)
        literal = model.train()(**batch)
    finally:
        model.config.align_reduction = "mean"
        model.eval()
    torch.testing.assert_close(literal.align_loss, squared_norm)
    classes = polarity_classes(batch["labels"], 3)
    sup = torch.nn.functional.cross_entropy(model.classifier.supervised(out.z_ori), classes)
    torch.testing.assert_close(out.sup_loss, sup)


def test_loss_switches_drop_terms():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(lambda_sup=0.0, lambda_self=0.0, lambda_align=0.0)).train()
    out = m(**make_batch())
    assert out.self_loss is None                                                    # augmented view skipped
    torch.testing.assert_close(out.loss, out.task_loss)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config()).train()
    batch = make_batch(B=4)
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    # L1's gradient is a mean of signs: unbalanced targets keep the output bias's gradient away from 0.
    batch["labels"] = torch.tensor([2.5, -2.0, 1.5, 3.0])
    m(**batch).loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    assert m.ssu.graph_builders["audio"].threshold_lambda.grad.abs() > 0


# --------------------------------------------------------------------------------------------------
# Configurations, ablations, outputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"modalities": ["audio", "visual"]},
        {"modalities": ["text"]},
        {"modalities": ["text", "visual"]},
        {"use_anchor": False},
        {"text_graph": "chain"},
        {"text_graph_directed": True, "head_input": "concat", "sup_num_classes": 7},
        {"head_input": "ori", "sup_num_classes": 2, "reg_loss": "mse", "gat_layers": 1, "fusion_topk": 0},
        {"num_labels": 3},
        {"graph_max_nodes": 4},
    ],
)
def test_configurations_run_and_train(overrides):
    torch.manual_seed(0)
    cfg = tiny_config(**overrides)
    m = SSUForSequenceClassification(cfg).train()
    batch = make_batch(B=4, modalities=cfg.modalities)
    if cfg.text_graph == "chain":
        batch.pop("dependency_heads", None)
    if cfg.num_labels == 3:
        batch["labels"] = torch.tensor([0, 2, 1, 2])
    out = m(**batch, output_graphs=True)
    assert out.logits.shape == (4, cfg.num_labels) and torch.isfinite(out.loss)
    out.loss.backward()
    if cfg.graph_max_nodes == 4:
        assert out.adjacency_visual.shape == (4, 4, 4)                              # 9 frames pooled to 4 segments
    if "text" in cfg.modalities:
        assert out.text_adjacency is not None and torch.equal(out.text_adjacency, out.text_adjacency.transpose(1, 2)) != cfg.text_graph_directed


def test_literal_aligned_graph_needs_aligned_lengths():
    torch.manual_seed(0)
    m = SSUModel(tiny_config(graph_similarity="literal_aligned")).eval()
    batch = make_batch(T=8, Ta=8, Tv=8)
    out = m(**inputs_of(batch), output_graphs=True)
    assert out.adjacency_audio.shape == (3, 8, 8)
    with pytest.raises(ValueError, match="word-aligned"):
        m(**inputs_of(make_batch(T=8, Ta=6, Tv=8)))


def test_outputs_hidden_states_tuple_and_no_graphs_by_default(model):
    batch = make_batch()
    out = model(**inputs_of(batch), output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (3, 8, 32)
    assert out.adjacency_audio is None and out.threshold_lambda is None
    tup = model(**batch, return_dict=False)
    assert isinstance(tup, tuple)
    torch.testing.assert_close(tup[1], model(**batch).logits)
    base = model.ssu(**inputs_of(batch), output_graphs=True)
    assert base.pooler_output.shape == (3, 16)
    torch.testing.assert_close(base.threshold_lambda, torch.tensor([0.5, 0.5]))


def test_missing_modality_equals_fully_masked(model):
    batch = make_batch()
    masked = inputs_of(batch)
    masked["audio_features"] = torch.full_like(batch["audio_features"], float("nan"))
    masked["audio_attention_mask"] = torch.zeros_like(batch["audio_attention_mask"])
    absent = {k: v for k, v in inputs_of(batch).items() if not k.startswith("audio")}
    torch.testing.assert_close(model(**masked).logits, model(**absent).logits)
    # Extra padded frames with garbage change nothing either.
    padded = inputs_of(batch)
    padded["visual_features"] = torch.cat([batch["visual_features"], torch.full((3, 4, V_DIM), 1e6)], dim=1)
    padded["visual_attention_mask"] = torch.cat([batch["visual_attention_mask"], torch.zeros(3, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(**padded).logits, model(**inputs_of(batch)).logits)
    # Text missing from a text model: runs, text graph empty.
    no_text = {k: v for k, v in inputs_of(batch).items() if k.startswith(("audio", "visual"))}
    out = model(**no_text, output_graphs=True)
    assert torch.isfinite(out.logits).all() and out.text_adjacency.sum() == 0


def test_bad_inputs_raise(model):
    batch = inputs_of(make_batch())
    cases = [
        ({"dependency_heads": None}, "dependency_heads"),
        ({"dependency_heads": batch["dependency_heads"][:, :5]}, "dependency_heads"),
        ({"dependency_heads": batch["dependency_heads"].float()}, "integer"),
        ({"dependency_heads": batch["dependency_heads"] + 20}, r"\[-1, 7\]"),
        ({"audio_features": torch.randn(3, 6, A_DIM + 1)}, "audio_features"),
        ({"visual_features": torch.randn(2, 9, V_DIM), "visual_attention_mask": None}, "batch size"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            model(**{**batch, **change})
    with pytest.raises(ValueError, match="without `input_ids`"):
        model(audio_features=batch["audio_features"], dependency_heads=batch["dependency_heads"])
    with pytest.raises(ValueError, match="labels"):
        model(**batch, labels=torch.zeros(5))
    with pytest.raises(ValueError, match="modalities"):
        SSUModel(tiny_config(modalities=["audio"]))(**batch)


@pytest.mark.parametrize(
    "bad",
    [{"text_graph": "tree"}, {"gat_heads": 3}, {"aug_edge_drop": 1.0}, {"lambda_self": -1.0},
     {"sup_num_classes": 5}, {"head_input": "both"}, {"graph_max_nodes": 0}, {"contrastive_temperature": 0.0},
     {"hidden_size": "wide"}, {"gat_heads": "2"}],
)
def test_config_validation(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        tiny_config(**bad)


# --------------------------------------------------------------------------------------------------
# Save / load, Auto classes, remote code
# --------------------------------------------------------------------------------------------------


# Loaded weights are views into the safetensors buffer with other memory alignment, which can change the last
# bit of a SIMD reduction; everything else must match exactly.
SAME = {"rtol": 1e-5, "atol": 1e-8}


def test_save_load_and_auto_round_trips(model, tmp_path):
    batch = inputs_of(make_batch())
    expected = model(**batch)
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, SSUConfig)
    assert set(config.auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    for loader in (SSUForSequenceClassification.from_pretrained, AutoModelForSequenceClassification.from_pretrained):
        again = loader(tmp_path).eval()
        torch.testing.assert_close(again(**batch).logits, expected.logits, **SAME)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, SSUModel)
    torch.testing.assert_close(base(**batch).z_fuse, expected.z_fuse, **SAME)
    torch.testing.assert_close(base.graph_builders["visual"].threshold_lambda, model.ssu.graph_builders["visual"].threshold_lambda)


def test_trust_remote_code_without_the_package(model, tmp_path):
    batch = inputs_of(make_batch())
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    assert (saved / "modeling_ssu.py").is_file() and (saved / "graphs_ssu.py").is_file() and (saved / "configuration_common.py").is_file()
    elsewhere = tmp_path / "elsewhere" / "ssu-checkpoint"
    shutil.copytree(saved, elsewhere)
    torch.save(batch, tmp_path / "batch.pt")
    torch.save({"logits": model(**batch).logits, "z_fuse": model.ssu(**batch).z_fuse}, tmp_path / "expected.pt")
    script = without_package(textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        head = AutoModelForSequenceClassification.from_pretrained({str(elsewhere)!r}, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained({str(elsewhere)!r}, trust_remote_code=True).eval()
        assert "hf_mmfusion" not in type(head).__module__
        torch.testing.assert_close(head(**batch).logits, expected["logits"], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(base(**batch).z_fuse, expected["z_fuse"], rtol=1e-5, atol=1e-8)
        print("remote-ok", type(head).__name__, type(base).__name__)
        """
    ))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "remote-ok SSUForSequenceClassification SSUModel" in done.stdout


def test_meta_device_construction_initialises_every_custom_parameter(tmp_path):
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config())
    builder = m.ssu.graph_builders["audio"]
    torch.testing.assert_close(torch.nn.functional.softplus(builder.scale_raw), torch.tensor([5.0]))
    assert builder.position_bias[0] == 0 and builder.position_bias[-1] == -1
    gat = m.ssu.shared_gat.layers[0]
    assert gat.att_edge.abs().sum() > 0 and gat.lin.weight.abs().sum() > 0
    m.save_pretrained(tmp_path)
    again = SSUForSequenceClassification.from_pretrained(tmp_path)
    for (n, p), (_, q) in zip(m.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), n


def test_from_text_pretrained_uses_given_text_weights(tmp_path):
    text = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    bert = AutoModel.from_config(text)
    bert.save_pretrained(tmp_path)
    m = SSUForSequenceClassification.from_text_pretrained(
        str(tmp_path), hidden_size=16, graph_proj_dim=16, gat_heads=2, cross_attn_heads=2, audio_input_dim=A_DIM,
        visual_input_dim=V_DIM, num_labels=1,
    )
    torch.testing.assert_close(m.get_input_embeddings().weight, bert.get_input_embeddings().weight)


# --------------------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------------------


def test_learns_a_cross_modal_interaction():
    """Label sign = audio sign x visual sign: neither modality alone beats chance."""
    from hf_mmfusion.data.synthetic import generate_synthetic_examples, synthetic_model_batch

    def data(n, seed):
        cols = generate_synthetic_examples(n, ("audio", "visual"), audio_dim=A_DIM, visual_dim=V_DIM, seed=seed,
                                           audio_frames=(6, 10), visual_frames=(6, 10))
        return synthetic_model_batch(cols)

    torch.manual_seed(0)
    train, valid = data(256, 1), data(128, 2)
    m = SSUForSequenceClassification(tiny_config(modalities=["audio", "visual"]))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)

    def accuracy():
        m.eval()
        with torch.no_grad():
            pred = m(**inputs_of(valid)).logits.squeeze(-1)
        m.train()
        return ((pred > 0) == (valid["labels"] > 0)).float().mean().item()

    history = [accuracy()]
    while history[-1] < 0.95 and len(history) <= 15:
        perm = torch.randperm(256)
        for s in range(0, 256, 32):
            idx = perm[s:s + 32]
            loss = m(**{k: v[idx] for k, v in train.items()}).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append(accuracy())
    assert history[0] < 0.75
    assert history[-1] >= 0.95, history


# --------------------------------------------------------------------------------------------------
# Mechanisms that must be live (each of these was once inert or batch-dependent)
# --------------------------------------------------------------------------------------------------


def test_length_cap_makes_a_sample_independent_of_batch_padding():
    # 6 real frames padded to 40 in a batch whose other sample is longer than the cap of 8: the short sample
    # keeps its frames (not spread over stretched segments) and scores exactly as it does alone.
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(graph_max_nodes=8, feature_dropout=0.0)).eval()
    alone = make_batch(B=1, Ta=6, Tv=5, seed=3)
    long = make_batch(B=1, Ta=40, Tv=30, seed=4)
    padded = {}
    for key, value in alone.items():
        if key.startswith(("audio", "visual")):
            width = long[key].shape[1]
            pad = torch.zeros((1, width - value.shape[1]) + value.shape[2:], dtype=value.dtype)
            padded[key] = torch.cat([torch.cat([value, pad], 1), long[key]])
        else:
            padded[key] = torch.cat([value, long[key]])
    with torch.no_grad():
        a = m(**inputs_of(alone), output_graphs=True)
        b = m(**inputs_of(padded), output_graphs=True)
    torch.testing.assert_close(b.logits[:1], a.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.z_ori[:1], a.z_ori, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.adjacency_audio[0, :6, :6], a.adjacency_audio[0], atol=1e-6, rtol=1e-5)
    assert b.adjacency_audio.shape[1] == 8                                     # the long sample was pooled


def test_text_guidance_is_not_uniform_and_learns_from_the_start():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(gat_dropout=0.0, feature_dropout=0.0)).train()
    batch = make_batch(B=4, T=12, Ta=10, Tv=9)
    batch["labels"] = torch.tensor([2.5, -2.0, 1.5, 3.0])
    builder = m.ssu.graph_builders["audio"]
    states = torch.randn(4, 10, 16)
    guide = torch.randn(4, 12, 16)
    rows = torch.softmax(builder.scores(states, guide), -1)
    assert rows.max(-1).values.mean() > 2.0 / 12                             # far from the uniform 1/12
    m(**batch).loss.backward()

    def relative(params):
        return sum(p.grad.norm() for p in params) / sum(p.norm() for p in params)

    with torch.no_grad():
        guidance = relative([builder.query.weight, builder.key.weight])
        gat = relative([p for p in m.ssu.shared_gat.parameters() if p.grad is not None])
    # Relative gradient of W_Q / W_K over the GAT's: 0.001-0.005 with std-0.02 projections (seeds 0-2 of
    # this setting), 0.05-0.22 with unit-gain ones.
    assert guidance / gat > 0.02, float(guidance / gat)


def test_anchor_free_ablation_uses_no_anchor_and_no_w_a():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(use_anchor=False)).train()
    assert m.ssu.anchor_projection is None
    assert not any("anchor" in name for name, _ in m.named_parameters())
    batch = make_batch(B=4)
    batch["labels"] = torch.tensor([2.5, -2.0, 1.5, 3.0])
    out = m(**batch, output_graphs=True)
    assert out.anchor_weights_audio is None and out.anchor_weights_text is None
    out.loss.backward()
    unused = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unused == []                                                        # DDP needs no find_unused_parameters
    graphs = real_graphs(m, make_batch(B=4))
    per = graphs.nodes_per_sample
    fsrc, fdst = graphs.fusion_edge_index % per
    owner = torch.full((per,), -1)
    for k, name in enumerate(graphs.lengths):
        owner[graphs.slots[name]:graphs.slots[name] + graphs.lengths[name]] = k
    assert (owner[fsrc] != owner[fdst]).any()                                  # cross-modal pairs still chosen


def test_without_the_supervised_term_every_parameter_still_learns():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(lambda_sup=0.0)).train()
    assert m.classifier.sup_proj is None
    batch = make_batch(B=4)
    batch["labels"] = torch.tensor([2.5, -2.0, 1.5, 3.0])
    out = m(**batch)
    assert out.sup_loss is None
    out.loss.backward()
    assert [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []


@pytest.mark.parametrize("modalities", [["text"], ["audio", "visual"], ["text", "audio"], ["text", "audio", "visual"]])
def test_gradient_checkpointing_for_every_modality_subset(modalities):
    cfg = tiny_config(modalities=modalities, gat_dropout=0.0, feature_dropout=0.0, classifier_dropout=0.0, lambda_self=0.0)
    batch = make_batch(B=4, modalities=modalities)
    batch["labels"] = torch.tensor([2.5, -2.0, 1.5, 3.0])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        m = SSUForSequenceClassification(cfg).train()
        if checkpointing:
            m.gradient_checkpointing_enable()
            assert m.ssu.shared_gat.gradient_checkpointing
        loss = m(**batch).loss
        loss.backward()
        grads.append((loss.detach(), m.ssu.fusion_gat.norm.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


def test_graph_outputs_give_the_node_masks_and_the_fusion_links_the_model_built():
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(graph_max_nodes=8)).eval()
    batch = make_batch(Ta=12, Tv=3)
    graphs = real_graphs(m, batch)
    with torch.no_grad():
        out = m(**inputs_of(batch), output_graphs=True)
        plain = m(**inputs_of(batch))
    assert plain.cross_modal_edges is None and plain.node_mask_audio is None
    # Twelve audio frames pooled into eight segments: the masks index the graph's nodes, not the frames.
    assert out.node_mask_audio.shape == out.anchor_weights_audio.shape == (3, 8)
    for name in ("text", "audio", "visual"):
        assert torch.equal(out[f"node_mask_{name}"].bool(), graphs.masks[name])
    assert not out.node_mask_audio[1].bool().all() and out.node_mask_audio[0].bool().all()
    # Each cross-modal link once, and the fusion graph has exactly these edges between modalities, both ways.
    modalities, per = list(m.config.modalities), graphs.nodes_per_sample
    links = out.cross_modal_edges.tolist()
    assert out.cross_modal_edges.dtype == torch.long and len(links) == len({tuple(link) for link in links}) > 0
    expected = {}
    for (b, a, i, c, j), w in zip(links, out.cross_modal_edge_weights.tolist()):
        assert a < c and graphs.masks[modalities[a]][b, i] and graphs.masks[modalities[c]][b, j]
        u, v = b * per + graphs.slots[modalities[a]] + i, b * per + graphs.slots[modalities[c]] + j
        expected[(u, v)] = expected[(v, u)] = w
    slot_modality = {s + i: name for name, s in graphs.slots.items() for i in range(graphs.lengths[name])}
    built = {}
    for (s, t), w in zip(graphs.fusion_edge_index.T.tolist(), graphs.fusion_edge_attr[:, 0].tolist()):
        ends = (slot_modality.get(s % per), slot_modality.get(t % per))
        if None not in ends and ends[0] != ends[1]:
            built[(s, t)] = w
    assert built.keys() == expected.keys()
    assert all(built[key] == pytest.approx(w, abs=1e-6) for key, w in expected.items())


# --------------------------------------------------------------------------------------------------
# A primary modality
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(dict(primary_modality="audio"), "guiding modality 'text'"),
     (dict(modalities=["audio", "visual"], primary_modality="text"), "configured modalities"),
     (dict(primary_modality="text", primary_modality_bias=-1.0), "primary_modality_bias")],
)
def test_primary_modality_refusals(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def primary_side(graphs, ids):
    """Whether each node id is a text node or the fusion anchor (the first anchor slot)."""
    slot = ids % graphs.nodes_per_sample
    text = (slot >= graphs.slots["text"]) & (slot < graphs.slots["text"] + graphs.lengths["text"])
    return text | (slot == next(iter(graphs.layout.anchor_slots.values())))


@pytest.mark.parametrize("primary", [None, "text"])
def test_primary_modality_fusion_graph_sends_but_does_not_receive(primary):
    torch.manual_seed(0)
    m = SSUForSequenceClassification(tiny_config(primary_modality=primary)).eval()
    graphs = real_graphs(m, make_batch())
    source, target = graphs.fusion_edge_index
    into_text = primary_side(graphs, target) & ~primary_side(graphs, source)
    out_of_text = primary_side(graphs, source) & ~primary_side(graphs, target)
    assert out_of_text.sum() > 0
    # Symmetric: every cross-modal link and anchor edge both ways; primary: none back into text or the anchor.
    assert into_text.sum() == (0 if primary else out_of_text.sum())
    # The per-modality graphs of the shared GAT are untouched.
    torch.manual_seed(0)
    plain = real_graphs(SSUForSequenceClassification(tiny_config()).eval(), make_batch())
    assert torch.equal(graphs.modality_edge_index, plain.modality_edge_index)


def test_primary_modality_starts_as_its_own_model_and_every_part_still_learns():
    def audio_visual_effect(model):
        batch = inputs_of(make_batch())
        louder = dict(batch, audio_features=5 * batch["audio_features"] + 1, visual_features=-3 * batch["visual_features"])
        with torch.no_grad():
            return (model(**batch).logits - model(**louder).logits).abs().max().item()

    torch.manual_seed(0)
    symmetric = SSUForSequenceClassification(tiny_config(gat_dropout=0.0, feature_dropout=0.0)).eval()
    torch.manual_seed(0)
    model = SSUForSequenceClassification(tiny_config(primary_modality="text", gat_dropout=0.0, feature_dropout=0.0)).eval()
    gates = model.ssu.readout_gates()
    assert list(gates) == ["audio", "visual"] and all(abs(g.item() - 0.0067) < 1e-3 for g in gates.values())
    # Audio and visual reach the prediction only through their gates (sigmoid(-5)), not through text's nodes.
    assert audio_visual_effect(symmetric) > 0.05 and audio_visual_effect(model) < 0.01 * audio_visual_effect(symmetric)
    model.train()
    model(**make_batch()).loss.backward()
    d = model.config.hidden_size
    assert model.ssu.readout_gate_bias.grad.abs().min() > 0
    assert model.ssu.fuse_projection.weight.grad[:, d:].abs().sum() > 0


def audio_signal_split(g: torch.Generator, n: int, held: int = 64, T: int = 6):
    """Random words and audio frames; the label is 3x the mean of the audio's first feature. Returns the first
    ``n`` samples and ``held`` more, as two batches."""
    audio = torch.randn(n + held, 8, A_DIM, generator=g)
    data = {
        "input_ids": torch.randint(1, VOCAB, (n + held, T), generator=g),
        "attention_mask": torch.ones(n + held, T, dtype=torch.long),
        "audio_features": audio, "labels": audio[..., 0].mean(1) * 3,
    }
    return {k: v[:n] for k, v in data.items()}, {k: v[n:] for k, v in data.items()}


def test_primary_modality_gives_way_to_a_modality_that_carries_the_signal():
    """Text is noise and the label is the audio's mean: on unseen samples the model predicts it through the
    gated audio readout (on the training samples it could also recall the label from the words)."""
    g, n = torch.Generator().manual_seed(3), 384
    train, test = audio_signal_split(g, n)
    torch.manual_seed(0)
    model = SSUForSequenceClassification(tiny_config(
        modalities=["text", "audio"], primary_modality="text", text_graph="chain", gat_dropout=0.0,
        feature_dropout=0.0, classifier_dropout=0.0,
    ))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = model.ssu.readout_gates()["audio"].item()
    for _ in range(30):
        train_epoch(model, optimizer, train, torch.randperm(n, generator=g))
    model.eval()
    with torch.no_grad():
        predicted = model(**inputs_of(test)).logits.view(-1)
        silent = model(input_ids=test["input_ids"], attention_mask=test["attention_mask"]).logits.view(-1)
    variance = test["labels"].var()
    assert ((predicted - test["labels"]) ** 2).mean() < 0.6 * variance
    assert model.ssu.readout_gates()["audio"] > 2 * start
    # Without its audio the model has nothing left to predict from.
    assert ((silent - test["labels"]) ** 2).mean() > 0.9 * variance


def test_primary_modality_round_trips(tmp_path):
    torch.manual_seed(0)
    model = SSUForSequenceClassification(tiny_config(primary_modality="text")).eval()
    with torch.no_grad():
        model.ssu.readout_gate_bias.add_(torch.tensor([0.5, 1.0]))  # trained gates, not the initial ones
    batch = inputs_of(make_batch())
    model.save_pretrained(tmp_path)
    loaded = SSUForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.primary_modality == "text"
    torch.testing.assert_close(loaded.ssu.readout_gate_bias, model.ssu.readout_gate_bias)
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, **SAME)


def trained_text_model():
    """A SSU of text alone with a few training steps behind it."""
    torch.manual_seed(0)
    return trained_on(SSUForSequenceClassification(tiny_config(modalities=["text"])), make_batch(modalities=("text",)))


def test_load_primary_model_starts_as_the_text_model_and_trains_only_the_rest():
    text = trained_text_model()
    torch.manual_seed(1)
    model = SSUForSequenceClassification(tiny_config(primary_modality="text"))
    frozen = model.load_primary_model(text)
    model.eval()
    batch = inputs_of(make_batch())
    with torch.no_grad():
        alone = text(**inputs_of(make_batch(modalities=("text",)))).logits
        torch.testing.assert_close(model(**batch).logits, alone, **SAME)
        louder = dict(batch, audio_features=5 * batch["audio_features"] + 1)
        torch.testing.assert_close(model(**louder).logits, alone, **SAME)
    assert all(g.item() > 0.99 for g in model.ssu.readout_gates().values())
    assert "ssu.text_encoder.model.encoder.layer.0.attention.self.query.weight" in frozen
    assert not any(n.startswith(("ssu.projections.audio", "ssu.enhancers")) for n in frozen)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        optimizer.zero_grad()
        model(**make_batch()).loss.backward()
        optimizer.step()
    d = model.config.hidden_size
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not moved & set(frozen)
    for name in ("ssu.ori_projection.weight", "ssu.fuse_projection.weight"):
        weight = dict(model.named_parameters())[name]
        assert torch.equal(weight[:, :d], before[name][:, :d])        # the text columns stay the text model's
        assert not torch.equal(weight[:, d:], before[name][:, d:])    # audio and visual columns learn
    assert {"ssu.projections.audio.weight", "ssu.enhancers.visual.value.weight", "ssu.readout_gate_bias"} <= moved
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, alone)


def test_load_primary_model_lets_in_a_modality_that_carries_the_rest_of_the_signal():
    """The label is the audio's mean; the text model (trained on text alone) cannot know it. Fitted on the frozen
    text model, the audio part predicts it on unseen samples."""
    g, n = torch.Generator().manual_seed(3), 384
    train, test = audio_signal_split(g, n)
    quiet = dict(text_graph="chain", gat_dropout=0.0, feature_dropout=0.0, classifier_dropout=0.0)
    torch.manual_seed(0)
    text = SSUForSequenceClassification(tiny_config(modalities=["text"], **quiet))
    model = SSUForSequenceClassification(tiny_config(modalities=["text", "audio"], primary_modality="text", **quiet))
    model.load_primary_model(text)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(15):
        train_epoch(model, optimizer, train, torch.randperm(n, generator=g))
    model.eval()
    with torch.no_grad():
        predicted = model(**inputs_of(test)).logits.view(-1)
    assert ((predicted - test["labels"]) ** 2).mean() < 0.6 * test["labels"].var()


@pytest.mark.parametrize(
    "primary_overrides, overrides, message",
    [
        (dict(modalities=["text"]), dict(), "config.primary_modality"),
        (dict(modalities=["text", "audio"]), dict(primary_modality="text"), "modalities \\['text'\\]"),
        (dict(modalities=["text"], gat_layers=1), dict(primary_modality="text"), "gat_layers 1"),
        (dict(modalities=["text"], hidden_size=8, graph_proj_dim=8), dict(primary_modality="text"), "hidden_size 8"),
    ],
)
def test_load_primary_model_refusals(primary_overrides, overrides, message):
    primary = SSUForSequenceClassification(tiny_config(**primary_overrides))
    model = SSUForSequenceClassification(tiny_config(**overrides))
    with pytest.raises(ValueError, match=message):
        model.load_primary_model(primary)
    with pytest.raises(ValueError, match="must be a SSUForSequenceClassification"):
        SSUForSequenceClassification(tiny_config(primary_modality="text")).load_primary_model(SSUModel(primary.config))
