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

"""SSU (Structural-Semantic Unifier): graph-based multimodal fusion with a text-derived semantic anchor.

Pipeline (shapes for batch B, width d):

1. Unimodal states: text ``X^t = LN(Linear(BERT last layer))`` [B, Tt, d]; audio / visual
   ``X^m = Dropout(LN(Linear(frames)))`` [B, Tm, d] (frames segment-pooled to ``graph_max_nodes`` first).
2. Text-guided enhancement (Eq. 1-2): ``H^m = X^m + Attn(Q=X^m, K=V=X^t)``.
3. Graphs: text from ``dependency_heads`` (or a chain); audio / visual from the cosine similarity of the
   frames' text-attention rows plus a learnable distance bias, row softmax, symmetrisation and the
   adaptive threshold ``tau = mu + lambda sigma`` (Eq. 3-5; a soft band around tau so lambda learns).
4. Anchor (Eq. 6-7): ``z_a`` = mean text state, linked to every node with weights
   ``beta_i = softmax_i(z_a^T W_a H_i)``.
5. One shared GAT over all modality graphs (one disjoint batched graph) -> ``z_ori``; the same GAT over an
   edge-dropped / edge-added copy (training) -> ``z_aug``; a separate GAT over the fusion graph (intra edges,
   anchor edges, top-k cross-modal edges) -> ``z_fuse``.
6. Losses (Eq. 11): task loss + lambda_sup CE(z_ori) + lambda_self InfoNCE(z_ori, z_aug) + lambda_align
   ||z_fuse - z_ori||^2.

Graph construction (the pure tensor functions and the text-guided graph module) lives in ``graphs_ssu.py``.

Every departure from the paper, why, and the config switch that restores the literal reading: the SSU
section of ``hf_mmfusion/model_notes.md`` (``hf_mmfusion.hub.card.departures("ssu")``), which every
SSU model card carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, auto_docstring, can_return_tuple

from .configuration_ssu import SSUConfig
from .graphs_ssu import (
    SSUGraphs,
    SSUTextGuidedGraph,
    anchor_free_scores,
    assemble_graphs,
    chain_heads_from_mask,
    heads_adjacency,
    node_layout,
)
from .inputs import check_labels, prepare_inputs
from .masking import cap_length, masked_mean, masked_softmax, zero_padding
from .modeling_common import (
    AutoMapMixin,
    OutputLinear,
    SignalLinear,
    TextPretrainedMixin,
    carry_fields,
    init_common_weights,
    load_primary_weights,
    regression_offset,
)
from .text_backbone import TextLevelEncoder


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent between ``z1[B, d]`` and ``z2[B, d]``: positives on the diagonal, in-batch negatives.

    ``mean_i -log softmax_j(cos(z1_i, z2_j) / temperature)[i]``; 0 for a batch of one (no negatives).
    """
    if z1.shape[0] < 2:
        return z1.new_zeros(()) + 0.0 * (z1.sum() + z2.sum())
    with torch.autocast(device_type=z1.device.type, enabled=False):
        a = F.normalize(z1.float(), dim=-1)
        b = F.normalize(z2.float(), dim=-1)
        logits = a @ b.T / temperature
        return F.cross_entropy(logits, torch.arange(z1.shape[0], device=z1.device))


def polarity_classes(scores: torch.Tensor, num_classes: int, boundary: float = 0.0) -> torch.Tensor:
    """Sentiment classes from scores: 3 = below / at / above ``boundary``, 2 = below / at or above it,
    7 = round(clip(y, -3, 3)) + 3 (the [-3, 3] scale's grades)."""
    if num_classes == 3:
        return (scores > boundary).long() * 2 + (scores == boundary).long()
    if num_classes == 2:
        return (scores >= boundary).long()
    if num_classes == 7:
        return torch.round(scores.clamp(-3.0, 3.0)).long() + 3
    raise ValueError(f"sup_num_classes must be 2, 3 or 7, got {num_classes}")


# ---------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------


class SSUTextGuidedEnhancement(nn.Module):
    """Text-guided enhancement (Eq. 1): queries from a modality ``x[B, Tm, d]``, keys / values from the
    guide ``g[B, Tg, d]``; padded guide tokens are masked and an empty guide gives zeros. -> ``[B, Tm, d]``."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        # Unit-gain scores, so the enhancement starts from text attention rather than the mean text state.
        self.query = SignalLinear(hidden_size, hidden_size)
        self.key = SignalLinear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, guide_mask: torch.Tensor) -> torch.Tensor:
        B, Tm, d = x.shape
        h = self.num_heads

        def split(t):  # [B, T, d] -> [B, h, T, d/h]
            return t.view(B, t.shape[1], h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(guide)), split(self.value(guide))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)                      # [B, h, Tm, Tg]
        attn = masked_softmax(scores, guide_mask[:, None, None, :], dim=-1)
        return self.output((attn @ v).transpose(1, 2).reshape(B, Tm, d))          # Eq. 1, H^m hat


class SSUGraphEncoder(GradientCheckpointingLayer):
    """A GATConv stack with scalar edge weights: ``x[N, d], edge_index[2, E], edge_attr[E, 1] -> [N, d]``.

    Layers before the last have ``gat_heads`` concatenated heads (ELU, dropout); the last has one head;
    the output is ``LayerNorm(x + h)``. Gradient checkpointing recomputes the whole stack (every modality
    subset has these two encoders, so checkpointing works for all of them).
    """

    def __init__(self, config: SSUConfig):
        super().__init__()
        from torch_geometric.nn import GATConv  # imported on first use: torch_geometric takes seconds to load

        d, heads, p = config.hidden_size, config.gat_heads, float(config.gat_dropout)
        layers = [
            GATConv(d, d // heads, heads=heads, concat=True, dropout=p, edge_dim=1, add_self_loops=True, fill_value="mean")
            for _ in range(config.gat_layers - 1)
        ]
        layers.append(GATConv(d, d, heads=1, concat=False, dropout=p, edge_dim=1, add_self_loops=True, fill_value="mean"))
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(p)
        self.norm = nn.LayerNorm(d)

    def forward(self, x, edge_index, edge_attr):
        h = x
        for layer in self.layers[:-1]:
            h = self.dropout(F.elu(layer(h, edge_index, edge_attr)))
        h = self.layers[-1](h, edge_index, edge_attr)
        return self.norm(x + h)


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------


@auto_docstring(
    custom_intro="""
    Output of [`SSUModel`]: the representation the head reads, the three graph views and, on request, the graphs.
    """
)
@dataclass
class SSUModelOutput(ModelOutput):
    r"""
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, or `2 * hidden_size` with `head_input="concat"`):
        The representation the prediction head reads.
    z_ori (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Original view (shared GAT).
    z_fuse (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Fusion view (fusion GAT).
    z_aug (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, *optional*):
        Augmented view; only in training mode with `lambda_self > 0`.
    hidden_states (`tuple(torch.FloatTensor)`, each of shape `(batch_size, tokens, text_hidden)`, *optional*):
        Text encoder hidden states (`output_hidden_states=True`).
    attentions (`tuple(torch.FloatTensor)`, each of shape `(batch_size, heads, tokens, tokens)`, *optional*):
        Text encoder attentions (`output_attentions=True`).
    text_adjacency (`torch.FloatTensor` of shape `(batch_size, text_len, text_len)`, *optional*):
        1 where two word pieces are linked (`output_graphs=True` or `output_attentions=True`, like the fields
        below).
    adjacency_audio (`torch.FloatTensor` of shape `(batch_size, nodes, nodes)`, *optional*):
        Post-threshold graph A^m over the audio frames (or segments, when `graph_max_nodes` pooled them).
    adjacency_visual (`torch.FloatTensor` of shape `(batch_size, nodes, nodes)`, *optional*):
        Post-threshold graph A^m over the visual frames (or segments).
    anchor_weights_text (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        Anchor affinities beta of the text nodes (Eq. 7), 0 on padding.
    anchor_weights_audio (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        Anchor affinities beta of the audio nodes (Eq. 7), 0 on padding.
    anchor_weights_visual (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        Anchor affinities beta of the visual nodes (Eq. 7), 0 on padding.
    threshold_lambda (`torch.FloatTensor` of shape `(num_graph_modalities,)`, *optional*):
        The learned lambda of each audio / visual graph, in config order.
    node_mask_text (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        1 for the real text nodes (`output_graphs=True`, like the fields below).
    node_mask_audio (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        1 for the real audio nodes (segments, when `graph_max_nodes` pooled the frames).
    node_mask_visual (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        1 for the real visual nodes (segments, when `graph_max_nodes` pooled the frames).
    cross_modal_edges (`torch.LongTensor` of shape `(num_links, 5)`, *optional*):
        The fusion graph's cross-modal links, each once (it links them both ways): sample, modality a, node of a,
        modality b, node of b (modalities as indices in config order, a before b; nodes indexed within their
        modality).
    cross_modal_edge_weights (`torch.FloatTensor` of shape `(num_links,)`, *optional*):
        The weight of each of those links.
    """

    pooler_output: torch.FloatTensor | None = None
    z_ori: torch.FloatTensor | None = None
    z_fuse: torch.FloatTensor | None = None
    z_aug: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    text_adjacency: torch.FloatTensor | None = None
    adjacency_audio: torch.FloatTensor | None = None
    adjacency_visual: torch.FloatTensor | None = None
    anchor_weights_text: torch.FloatTensor | None = None
    anchor_weights_audio: torch.FloatTensor | None = None
    anchor_weights_visual: torch.FloatTensor | None = None
    threshold_lambda: torch.FloatTensor | None = None
    node_mask_text: torch.FloatTensor | None = None
    node_mask_audio: torch.FloatTensor | None = None
    node_mask_visual: torch.FloatTensor | None = None
    cross_modal_edges: torch.LongTensor | None = None
    cross_modal_edge_weights: torch.FloatTensor | None = None


@auto_docstring(
    custom_intro="""
    Output of [`SSUForSequenceClassification`]: the prediction, every term of Eq. 11 and the analyses of
    [`SSUModelOutput`].
    """
)
@dataclass
class SSUSequenceClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Eq. 11 total.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Predictions (raw scores for regression).
    task_loss (`torch.FloatTensor` of shape `()`, *optional*):
        L1 / MSE for regression, cross-entropy for classification.
    sup_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Supervised polarity cross-entropy on z_ori (Eq. 8).
    self_loss (`torch.FloatTensor` of shape `()`, *optional*):
        InfoNCE between the original and augmented views (Eq. 9; training only).
    align_loss (`torch.FloatTensor` of shape `()`, *optional*):
        `||z_fuse - z_ori||^2` (Eq. 10), divided by `d` with `align_reduction="mean"`, averaged over the batch.
    z_ori (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        As in [`SSUModelOutput`].
    z_fuse (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        As in [`SSUModelOutput`].
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        As in [`SSUModelOutput`].
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        As in [`SSUModelOutput`].
    text_adjacency (`torch.FloatTensor` of shape `(batch_size, text_len, text_len)`, *optional*):
        As in [`SSUModelOutput`].
    adjacency_audio (`torch.FloatTensor` of shape `(batch_size, nodes, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    adjacency_visual (`torch.FloatTensor` of shape `(batch_size, nodes, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    anchor_weights_text (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    anchor_weights_audio (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    anchor_weights_visual (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    threshold_lambda (`torch.FloatTensor` of shape `(num_graph_modalities,)`, *optional*):
        As in [`SSUModelOutput`].
    node_mask_text (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    node_mask_audio (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    node_mask_visual (`torch.FloatTensor` of shape `(batch_size, nodes)`, *optional*):
        As in [`SSUModelOutput`].
    cross_modal_edges (`torch.LongTensor` of shape `(num_links, 5)`, *optional*):
        As in [`SSUModelOutput`].
    cross_modal_edge_weights (`torch.FloatTensor` of shape `(num_links,)`, *optional*):
        As in [`SSUModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    task_loss: torch.FloatTensor | None = None
    sup_loss: torch.FloatTensor | None = None
    self_loss: torch.FloatTensor | None = None
    align_loss: torch.FloatTensor | None = None
    z_ori: torch.FloatTensor | None = None
    z_fuse: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    text_adjacency: torch.FloatTensor | None = None
    adjacency_audio: torch.FloatTensor | None = None
    adjacency_visual: torch.FloatTensor | None = None
    anchor_weights_text: torch.FloatTensor | None = None
    anchor_weights_audio: torch.FloatTensor | None = None
    anchor_weights_visual: torch.FloatTensor | None = None
    threshold_lambda: torch.FloatTensor | None = None
    node_mask_text: torch.FloatTensor | None = None
    node_mask_audio: torch.FloatTensor | None = None
    node_mask_visual: torch.FloatTensor | None = None
    cross_modal_edges: torch.LongTensor | None = None
    cross_modal_edge_weights: torch.FloatTensor | None = None


# The config fields that shape the primary modality's path (the others concern the other modalities or only
# training): an SSU of the primary modality alone extends to a model that agrees with it on all of them.
PRIMARY_PATH_FIELDS = (
    "hidden_size", "text_config", "gat_heads", "gat_layers", "head_input", "text_graph", "text_graph_directed",
    "use_anchor", "id2label", "fusion_topk",
)
# The two readout projections hold one column block per modality: [d, M*d].
_READOUT_COLUMNS = {"ori_projection.weight": 1, "fuse_projection.weight": 1}


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


@auto_docstring(
    custom_intro="""
    Base class of the SSU models: weight initialisation, gradient checkpointing, loading pretrained text weights
    ([`~SSUPreTrainedModel.from_text_pretrained`]) and saving with the code for `trust_remote_code`.
    """
)
class SSUPreTrainedModel(AutoMapMixin, TextPretrainedMixin, PreTrainedModel):
    config_class = SSUConfig
    config: SSUConfig
    base_model_prefix = "ssu"
    # A GAT stack adds its input back (residual), the enhancement attends over the whole guide and a graph
    # builder compares every pair of nodes: each must run on one device.
    _no_split_modules = ["SSUTextGuidedEnhancement", "SSUTextGuidedGraph", "SSUGraphEncoder"]
    _auto_map_classes = {"AutoModel": "SSUModel", "AutoModelForSequenceClassification": "SSUForSequenceClassification"}
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        from torch_geometric.nn import GATConv
        from torch_geometric.nn.dense.linear import Linear as GeometricLinear

        if isinstance(module, SSUModel):
            if module.readout_gate_bias is not None:
                init.constant_(module.readout_gate_bias, -float(self.config.primary_modality_bias))
        elif isinstance(module, SSUTextGuidedGraph):
            cfg = self.config
            span = max(cfg.pos_bias_max_distance, 1)
            # Nearby frames start slightly favoured: bias -|i-j| / max distance, in [-1, 0].
            init.copy_(module.position_bias, -torch.arange(cfg.pos_bias_max_distance + 1, dtype=torch.float32) / span)
            s = float(cfg.graph_sim_scale_init)
            init.constant_(module.scale_raw, s + math.log(-math.expm1(-s)))     # softplus^-1(s)
            init.constant_(module.threshold_lambda, float(cfg.threshold_lambda_init))
        elif isinstance(module, GATConv):
            for param in (module.att_src, module.att_dst, module.att_edge):
                if param is not None:
                    bound = math.sqrt(6.0 / (param.shape[-2] + param.shape[-1]))
                    init.uniform_(param, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, GeometricLinear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif not init_common_weights(module):
            super()._init_weights(module)

    def load_primary_model(self, primary: SSUPreTrainedModel) -> list[str]:
        """Start from a trained SSU of ``config.primary_modality`` alone, and freeze that modality's path.

        Every parameter ``primary`` has is copied (same name and shape), the primary modality's columns of the
        two readout projections included; the other modalities' columns start at zero, so the model predicts
        exactly what ``primary`` predicts, whatever the other inputs. Their readout gates open
        (``sigmoid(+primary_modality_bias)``): with their columns at zero nothing has to be held back, and a
        closed gate would scale their training down with it. The copied parameters stop training (the readout
        columns through a gradient hook), so training moves only the other modalities' parts. Returns the
        names of the frozen parameters.

        Why: on few speakers, fine-tuning the text encoder next to audio and visual features sends it down
        another path than the text model's, however small their part (see `model_notes.md`); fitted on a
        frozen text model, they add to it instead.
        """
        frozen = load_primary_weights(self, primary, PRIMARY_PATH_FIELDS, _READOUT_COLUMNS)
        base = self if isinstance(self, SSUModel) else self.ssu
        with torch.no_grad():
            for readout in (base.ori_projection.weight, base.fuse_projection.weight):
                _, columns = readout.frozen_block
                kept = readout[:, columns].clone()
                readout.zero_()
                readout[:, columns] = kept                                     # [d, M*d]: the primary's columns
            if base.readout_gate_bias is not None:
                base.readout_gate_bias.fill_(float(self.config.primary_modality_bias))
        return frozen


@auto_docstring(
    custom_intro="""
    SSU without a head: graph construction, shared / fusion GATs and the z_ori / z_fuse / z_aug views. Without text
    in the config, the first configured modality takes the text's guiding role (attention keys, anchor).
    """
)
class SSUModel(SSUPreTrainedModel):

    def __init__(self, config: SSUConfig):
        super().__init__(config)
        d = config.hidden_size
        self.modalities = list(config.modalities)
        self.graph_modalities = config.graph_modalities
        if "text" in self.modalities:
            self.text_encoder = TextLevelEncoder(config.text_config)
            text_width = config.text_config.hidden_size
        widths = {"text": text_width if "text" in self.modalities else None,
                  "audio": config.audio_input_dim, "visual": config.visual_input_dim}
        self.projections = nn.ModuleDict({m: nn.Linear(widths[m], d) for m in self.modalities})
        self.norms = nn.ModuleDict({m: nn.LayerNorm(d) for m in self.modalities})
        self.feature_dropout = nn.Dropout(float(config.feature_dropout))
        self.enhancers = nn.ModuleDict({m: SSUTextGuidedEnhancement(d, config.cross_attn_heads) for m in self.graph_modalities})
        self.graph_builders = nn.ModuleDict({m: SSUTextGuidedGraph(config) for m in self.graph_modalities})
        # CODEPATH: use_anchor=False is the paper's "w/o semantic anchor" ablation (Table 3); the default configs
        # keep the anchor and its projection W_a of Eq. 7.
        self.anchor_projection = nn.Linear(d, d, bias=False) if config.use_anchor else None
        self.shared_gat = SSUGraphEncoder(config)
        self.fusion_gat = SSUGraphEncoder(config)
        # Unit-gain readouts and head layer (SignalLinear): modalities interact in these layers, and with
        # std-0.02 weights the head's ReLU sees a near-linear, near-zero input, so products of modalities
        # start with almost no gradient.
        self.ori_projection = SignalLinear(len(self.modalities) * d, d)
        self.fuse_projection = SignalLinear(len(self.modalities) * d, d)
        # CODEPATH: primary_modality (benchmarks/real_multimodal.py's ssu_tav) gates the other modalities'
        # readouts; the default configs read every modality at full weight.
        self.gated_modalities = [m for m in self.modalities if config.primary_modality not in (None, m)]
        self.readout_gate_bias = nn.Parameter(torch.empty(len(self.gated_modalities))) if self.gated_modalities else None
        self.post_init()

    # -- stage 1: unimodal states ----------------------------------------------------------------
    def _encode_text(self, input_ids, attention_mask, token_type_ids, inputs_embeds, output_attentions,
                     output_hidden_states):
        mask, out = self.text_encoder(
            input_ids, attention_mask, token_type_ids, inputs_embeds,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )
        states = self.norms["text"](self.projections["text"](out.last_hidden_state))
        return zero_padding(states, mask), mask, out

    def _encode_frames(self, modality, features, mask):
        cap = self.config.graph_max_nodes
        if cap is not None:
            features, mask = cap_length(features, mask, cap)                    # [B, min(T, cap), D]
        proj = self.projections[modality]
        states = self.feature_dropout(self.norms[modality](proj(features.to(proj.weight.dtype))))
        return zero_padding(states, mask), mask

    # -- stage 2: graphs -------------------------------------------------------------------------
    def enhance_nodes(self, states: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        """Node features: text states as they are, ``H^m = X^m + Attn(X^m, X^t)`` (Eq. 1-2) otherwise.

        Returns ``(nodes {m: [B, T_m, d]}, z_anchor [B, d] (Eq. 6))``.
        """
        guide_name = self.config.guide_modality
        guide, guide_mask = states[guide_name], masks[guide_name]
        nodes = {}
        for m in self.modalities:
            x = states[m]
            # Eq. 2: H^m = X^m + H^m hat (the text's own states are its nodes).
            nodes[m] = x if m == "text" else zero_padding(x + self.enhancers[m](x, guide, guide_mask), masks[m])
        return nodes, masked_mean(guide, guide_mask)                               # Eq. 6, z_a

    def construct_graphs(
        self,
        states: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        dependency_heads: torch.Tensor | None = None,
        augment: bool = False,
    ) -> SSUGraphs:
        """Build every graph of the batch from the unimodal states (Eq. 1-7, fusion edges, augmented view).

        ``states[m]`` is ``[B, T_m, d]`` and ``masks[m]`` bool ``[B, T_m]`` for each configured modality (config
        order); ``dependency_heads`` ``[B, T_text]`` is needed for a dependency text graph.
        """
        nodes, z_anchor = self.enhance_nodes(states, masks)
        return self.graph_structure(states, nodes, masks, z_anchor, dependency_heads, augment)

    def graph_structure(self, states, nodes, masks, z_anchor, dependency_heads=None, augment=False) -> SSUGraphs:
        """Edges and weights of every graph (Eq. 3-5 and 7, text arcs, fusion and augmented edges)."""
        cfg = self.config
        guide_name = self.config.guide_modality
        guide, guide_mask = states[guide_name], masks[guide_name]
        layout = node_layout(nodes, z_anchor, self.config.use_anchor)
        B, d = z_anchor.shape
        if self.anchor_projection is not None:
            # Eq. 7 scores z_a^T W_a H_i of every node slot, one [1, d] x [d, N] product per sample (an einsum
            # here takes 4% more of the graph construction's CPU time).
            query = self.anchor_projection(z_anchor).unsqueeze(1)               # [B, 1, d]
            scores = torch.bmm(query, layout.x.view(B, -1, d).transpose(1, 2)).squeeze(1)   # [B, N]
        else:
            scores = anchor_free_scores(nodes, masks, layout)
        adjacency, values, anchor_weights = {}, {}, {}
        for m in self.modalities:
            mask = masks[m]
            if m == "text":
                heads = chain_heads_from_mask(mask) if cfg.text_graph == "chain" else dependency_heads
                adjacency[m] = heads_adjacency(heads, mask, directed=cfg.text_graph_directed)
                values[m] = None                                                   # every text arc weighs 1
            else:
                adjacency[m], values[m] = self.graph_builders[m](states[m], mask, guide, guide_mask)
            slot = layout.slots[m]
            anchor_weights[m] = masked_softmax(scores[:, slot:slot + layout.lengths[m]], mask, dim=-1)   # Eq. 7
        return assemble_graphs(layout, masks, adjacency, values, anchor_weights, cfg, augment)

    # -- stage 3: GATs and readouts --------------------------------------------------------------
    def readout_gates(self) -> dict[str, torch.Tensor]:
        """``sigmoid(g_m)`` of each modality other than ``config.primary_modality`` (none without it)."""
        if self.readout_gate_bias is None:
            return {}
        return dict(zip(self.gated_modalities, torch.sigmoid(self.readout_gate_bias).unbind()))

    def _readout(self, h: torch.Tensor, graphs: SSUGraphs) -> torch.Tensor:
        """Masked mean of each modality's nodes (times its readout gate, if any), concatenated in config order
        -> ``[B, M * d]``."""
        per_sample = h.view(-1, graphs.nodes_per_sample, h.shape[-1])
        gates = self.readout_gates()
        means = [masked_mean(per_sample[:, s:s + graphs.lengths[m]], graphs.masks[m]) for m, s in graphs.slots.items()]
        return torch.cat([x * gates[m] if m in gates else x for x, m in zip(means, graphs.slots)], dim=-1)

    def encode_graphs(self, graphs: SSUGraphs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the shared GAT (original and augmented views in one call) and the fusion GAT.

        Returns ``(z_ori, z_fuse, z_aug or None)``, each ``[B, d]``.
        """
        x = graphs.x
        if graphs.augmented_edge_index is not None:
            n = x.shape[0]
            edge_index = torch.cat([graphs.modality_edge_index, graphs.augmented_edge_index + n], dim=1)
            edge_attr = torch.cat([graphs.modality_edge_attr, graphs.augmented_edge_attr])
            h = self.shared_gat(torch.cat([x, x]), edge_index, edge_attr)
            h_ori, h_aug = h[:n], h[n:]
        else:
            h_ori, h_aug = self.shared_gat(x, graphs.modality_edge_index, graphs.modality_edge_attr), None
        z_ori = self.ori_projection(self._readout(h_ori, graphs))
        z_aug = None if h_aug is None else self.ori_projection(self._readout(h_aug, graphs))
        h_fuse = self.fusion_gat(x, graphs.fusion_edge_index, graphs.fusion_edge_attr)
        z_fuse = self.fuse_projection(self._readout(h_fuse, graphs))
        return z_ori, z_fuse, z_aug

    # -- forward ---------------------------------------------------------------------------------
    def _check_heads(self, dependency_heads, text_present, text_length):
        if dependency_heads is None:
            if text_present and self.config.text_graph == "dependency":
                raise ValueError(
                    'text_graph="dependency" needs `dependency_heads` [batch, tokens] (long, -1 where none); '
                    "produce them with DependencyParser.encode / the processor, or set text_graph=\"chain\""
                )
            return None
        if not text_present:
            raise ValueError("`dependency_heads` was given without `input_ids` / `inputs_embeds`")
        if dependency_heads.is_floating_point() or dependency_heads.is_complex() or dependency_heads.dtype == torch.bool:
            raise ValueError(f"`dependency_heads` must hold integer token indices, got dtype {dependency_heads.dtype}")
        if dependency_heads.numel() and (dependency_heads.min() < -1 or dependency_heads.max() >= text_length):
            raise ValueError(
                f"`dependency_heads` values must lie in [-1, {text_length - 1}] (token indices of the same row, "
                "-1 for none)"
            )
        return dependency_heads.long()

    @can_return_tuple
    @auto_docstring(
        custom_intro="""
        Runs every configured modality present in the call; a configured modality missing from the call is treated
        as fully masked.
        """
    )
    # trf-ignore: TRF045 output_* reach the text encoder (any AutoModel, recording its own); output_attentions also returns the graphs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        visual_features: torch.FloatTensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        dependency_heads: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_graphs: bool | None = None,
    ) -> SSUModelOutput:
        r"""
        audio_features (`torch.FloatTensor` of shape `(batch_size, frames, audio_input_dim)`, *optional*):
            Acoustic frames (COVAREP, eGeMAPS, log-mel, ...).
        audio_attention_mask (`torch.Tensor` of shape `(batch_size, frames)`, *optional*):
            1 for a real acoustic frame, 0 for padding; all frames are real when omitted.
        visual_features (`torch.FloatTensor` of shape `(batch_size, frames, visual_input_dim)`, *optional*):
            Visual frames (Facet, OpenFace, CNN features, ...).
        visual_attention_mask (`torch.Tensor` of shape `(batch_size, frames)`, *optional*):
            1 for a real visual frame, 0 for padding; all frames are real when omitted.
        dependency_heads (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Index of each token's syntactic head token, -1 where none; required with text and
            `text_graph="dependency"` (`DependencyParser.encode` or the processor produce them).
        output_graphs (`bool`, *optional*):
            Whether to return the graphs (adjacencies, anchor weights, thresholds); `output_attentions=True`
            returns them too.

        Returns:
            [`SSUModelOutput`], or its tuple without the `None` fields when `return_dict=False`.
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_graphs = bool(output_graphs) or bool(output_attentions)

        inputs = prepare_inputs(
            cfg, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds, audio_features=audio_features, audio_attention_mask=audio_attention_mask,
            visual_features=visual_features, visual_attention_mask=visual_attention_mask,
            dependency_heads=dependency_heads,
        )
        text_len = (input_ids if input_ids is not None else inputs_embeds).shape[1] if inputs.text_present else 0
        heads = self._check_heads(dependency_heads, inputs.text_present, text_len)

        states, masks, text_out = {}, {}, None
        for m in self.modalities:
            if m == "text":
                if inputs.text_present:
                    states[m], masks[m], text_out = self._encode_text(
                        input_ids, attention_mask, token_type_ids, inputs_embeds, output_attentions, output_hidden_states
                    )
                else:
                    ref = next(iter(inputs.features.values()))
                    states[m] = ref.new_zeros(inputs.batch_size, 1, cfg.hidden_size, dtype=self.dtype)
                    masks[m] = torch.zeros(inputs.batch_size, 1, dtype=torch.bool, device=ref.device)
                    heads = torch.full((inputs.batch_size, 1), -1, dtype=torch.long, device=ref.device)
            else:
                states[m], masks[m] = self._encode_frames(m, inputs.features[m], inputs.masks[m])

        augment = self.training and cfg.lambda_self > 0
        graphs = self.construct_graphs(states, masks, heads, augment=augment)
        z_ori, z_fuse, z_aug = self.encode_graphs(graphs)
        pooled = {"fuse": z_fuse, "ori": z_ori}.get(cfg.head_input)
        if pooled is None:
            pooled = torch.cat([z_fuse, z_ori], dim=-1)

        out = SSUModelOutput(
            pooler_output=pooled, z_ori=z_ori, z_fuse=z_fuse, z_aug=z_aug,
            hidden_states=text_out.hidden_states if text_out is not None and output_hidden_states else None,
            attentions=text_out.attentions if text_out is not None and output_attentions else None,
        )
        if output_graphs:
            self._attach_graph_outputs(out, graphs)
        return out

    def _attach_graph_outputs(self, out, graphs: SSUGraphs) -> None:
        for m in self.modalities:
            # CODEPATH: only configs with the anchor (every one but the use_anchor=False ablation) have its weights.
            if self.config.use_anchor:
                out[f"anchor_weights_{m}"] = graphs.anchor_weights[m]
            if m == "text":
                out["text_adjacency"] = graphs.adjacency[m].to(out.z_ori.dtype)
            else:
                out[f"adjacency_{m}"] = graphs.edge_values[m]
            out[f"node_mask_{m}"] = graphs.masks[m].to(out.z_ori.dtype)
        links = graphs.cross_modal_links
        out["cross_modal_edges"] = torch.stack(
            [links.sample, links.modality_a, links.node_a, links.modality_b, links.node_b], dim=1
        )
        out["cross_modal_edge_weights"] = links.weight
        if self.graph_modalities:
            out["threshold_lambda"] = torch.cat([self.graph_builders[m].threshold_lambda for m in self.graph_modalities])


class SSUClassificationHead(nn.Module):
    """Prediction MLP ``pooled[B, d or 2d] -> [B, num_labels]`` and the Eq. 8 classifier ``z_ori[B, d] -> [B, C]``."""

    def __init__(self, config: SSUConfig, sup_outputs: int):
        super().__init__()
        d = config.hidden_size
        # CODEPATH: head_input="concat" (z_fuse and z_ori side by side) is an option beyond the paper; the default
        # configs read z_fuse alone, as "ori" reads z_ori.
        self.dense = SignalLinear(2 * d if config.head_input == "concat" else d, d)
        self.dropout = nn.Dropout(float(config.classifier_dropout))
        # Unit gain, as CLCR's head: with std 0.02 a fine-tuning learning rate (5e-5) leaves the prediction short
        # of the labels' scale (text-only CMU-MOSI validation MAE 0.933 -> 0.891, seed 1112).
        self.out_proj = OutputLinear(d, config.num_labels, regression_offset(config))
        self.sup_outputs = sup_outputs
        # Without the supervised term the classifier would get no gradient (and DDP would need
        # find_unused_parameters), so it only exists with lambda_sup > 0.
        # CODEPATH: the default configs (lambda_sup=0.1) train the Eq. 8 classifier; lambda_sup=0 is the
        # "w/o supervised loss" ablation.
        self.sup_proj = nn.Linear(d, sup_outputs) if config.lambda_sup > 0 else None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(F.relu(self.dense(pooled))))

    def supervised(self, z_ori: torch.Tensor) -> torch.Tensor | None:
        return None if self.sup_proj is None else self.sup_proj(z_ori)


@auto_docstring(
    custom_intro="""
    SSU with a prediction head (MLP on `pooler_output`) and the Eq. 11 training loss. `num_labels=1` (or
    `problem_type="regression"`) is regression (sentiment scores; L1 by default) and the supervised term uses
    polarity classes derived from the scores; otherwise classification (cross-entropy) and the supervised term
    uses the labels themselves.
    """
)
class SSUForSequenceClassification(SSUPreTrainedModel):

    def __init__(self, config: SSUConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ssu = SSUModel(config)
        self.classifier = SSUClassificationHead(config, sup_outputs=self._sup_outputs())
        self.post_init()

    def _is_regression_head(self) -> bool:
        return self.config.problem_type == "regression" or (self.config.problem_type is None and self.num_labels == 1)

    def _sup_outputs(self) -> int:
        return self.num_labels * self.config.sup_num_classes if self._is_regression_head() else self.num_labels

    def _losses(self, logits, labels, z_ori, z_fuse, z_aug) -> dict[str, torch.Tensor | None]:
        """Eq. 11: ``loss = L_task + lambda_sup L_sup + lambda_self L_self + lambda_align L_align``."""
        cfg = self.config
        labels = check_labels(cfg, logits, labels)
        regression = cfg.problem_type == "regression"
        if regression and self.classifier.sup_outputs != self.num_labels * cfg.sup_num_classes:
            raise ValueError(
                "regression labels given to a model built for classification; set problem_type / num_labels "
                "in the config before creating the model"
            )
        if regression and cfg.reg_loss == "l1":
            # The MSA convention (and the paper's): L1 on the scores; transformers' regression loss is MSE.
            task = F.l1_loss(logits, labels.view(-1, self.num_labels))
        else:
            task = self.loss_function(labels=labels, pooled_logits=logits, config=cfg)
        # Eq. 8: a classifier on z_ori; regression scores become polarity classes.
        sup = None
        sup_logits = self.classifier.supervised(z_ori)
        if sup_logits is not None:
            if regression:
                classes = polarity_classes(
                    labels.view(-1, self.num_labels), cfg.sup_num_classes, float(cfg.sup_polarity_boundary)
                ).view(-1)
                sup = F.cross_entropy(sup_logits.view(-1, cfg.sup_num_classes), classes)
            elif cfg.problem_type == "single_label_classification":
                sup = F.cross_entropy(sup_logits, labels.view(-1))
            else:
                sup = F.binary_cross_entropy_with_logits(sup_logits, labels)
        # Eq. 9: InfoNCE between the original and the edge-dropped view of each graph.
        self_loss = info_nce(z_ori, z_aug, float(cfg.contrastive_temperature)) if z_aug is not None else None
        # Eq. 10: the fused view is pulled to the structural one (per coordinate by default, see the config).
        squared = (z_fuse - z_ori).square()
        align = (squared.mean(-1) if cfg.align_reduction == "mean" else squared.sum(-1)).mean()
        total = task
        for weight, term in ((cfg.lambda_sup, sup), (cfg.lambda_self, self_loss), (cfg.lambda_align, align)):
            if weight > 0 and term is not None:
                total = total + weight * term
        return {"loss": total, "task_loss": task, "sup_loss": sup, "self_loss": self_loss, "align_loss": align}

    @can_return_tuple
    @auto_docstring(
        custom_intro="""
        Runs every configured modality present in the call; a configured modality missing from the call is treated
        as fully masked.
        """
    )
    # trf-ignore: TRF045 output_* reach the text encoder (any AutoModel, recording its own); output_attentions also returns the graphs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        visual_features: torch.FloatTensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        dependency_heads: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_graphs: bool | None = None,
    ) -> SSUSequenceClassifierOutput:
        r"""
        audio_features (`torch.FloatTensor` of shape `(batch_size, frames, audio_input_dim)`, *optional*):
            Acoustic frames (COVAREP, eGeMAPS, log-mel, ...).
        audio_attention_mask (`torch.Tensor` of shape `(batch_size, frames)`, *optional*):
            1 for a real acoustic frame, 0 for padding; all frames are real when omitted.
        visual_features (`torch.FloatTensor` of shape `(batch_size, frames, visual_input_dim)`, *optional*):
            Visual frames (Facet, OpenFace, CNN features, ...).
        visual_attention_mask (`torch.Tensor` of shape `(batch_size, frames)`, *optional*):
            1 for a real visual frame, 0 for padding; all frames are real when omitted.
        dependency_heads (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Index of each token's syntactic head token, -1 where none; required with text and
            `text_graph="dependency"` (`DependencyParser.encode` or the processor produce them).
        labels (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            Float scores for regression (`num_labels=1`), class indices for classification, or
            `(batch_size, num_labels)` multi-hot floats for `problem_type="multi_label_classification"`.
        output_graphs (`bool`, *optional*):
            Whether to return the graphs (adjacencies, anchor weights, thresholds); `output_attentions=True`
            returns them too.

        Returns:
            [`SSUSequenceClassifierOutput`], or its tuple without the `None` fields when `return_dict=False`.
        """
        base = self.ssu(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds, audio_features=audio_features, audio_attention_mask=audio_attention_mask,
            visual_features=visual_features, visual_attention_mask=visual_attention_mask,
            dependency_heads=dependency_heads, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, output_graphs=output_graphs, return_dict=True,
        )
        logits = self.classifier(base.pooler_output)
        losses = {}
        if labels is not None:
            losses = self._losses(logits, labels, base.z_ori, base.z_fuse, base.z_aug)
        return carry_fields(SSUSequenceClassifierOutput, base, logits=logits, **losses)


SSUModel.register_for_auto_class("AutoModel")
SSUForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["SSUForSequenceClassification", "SSUModel", "SSUPreTrainedModel"]
