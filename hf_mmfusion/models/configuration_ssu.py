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

"""Configuration of SSU (Structural-Semantic Unifier), a graph-based multimodal fusion model."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.utils import auto_docstring

from .configuration_common import MMFUSION_CONFIG_ARGS, MMFusionConfig

GRAPH_SIMILARITIES = ("attention_rows", "literal_aligned")
TEXT_GRAPHS = ("dependency", "chain")
HEAD_INPUTS = ("fuse", "ori", "concat")
REG_LOSSES = ("l1", "mse")
ALIGN_REDUCTIONS = ("mean", "sum")
SUP_NUM_CLASSES = (2, 3, 7)
THRESHOLD_RELAXATIONS = ("band", "straight_through")


@auto_docstring(
    custom_intro="""
    Configuration of [`SSUModel`] and [`SSUForSequenceClassification`].

    SSU builds one graph per modality (a dependency graph over text word pieces, text-guided similarity
    graphs over audio / visual frames), links every node to a semantic anchor (the mean text state), encodes
    the graphs with one shared GAT, fuses them in a joint graph with a separate GAT, and trains with a task
    loss plus supervised, self-supervised (augmented graph view) and alignment terms.

    `hidden_size` is the graph width `d`.
    """
)
@strict
class SSUConfig(MMFusionConfig):
    __doc__ = MMFUSION_CONFIG_ARGS + r"""
    cross_attn_heads (`int`, *optional*, defaults to 4):
        Heads of the text-guided enhancement attention (Eq. 1; queries from the audio / visual frames,
        keys and values from the text). Must divide `hidden_size`.
    graph_proj_dim (`int`, *optional*, defaults to 128):
        Width `d'` of the query / key projections `W_Q`, `W_K` that score frames against text tokens (Eq. 3).
    graph_similarity (`str`, *optional*, defaults to `"attention_rows"`):
        `"attention_rows"`: the frame graph is the cosine similarity of the frames' text-attention rows
        (`R R^T`, any lengths). `"literal_aligned"`: Eq. 4 as printed, `softmax(S)` symmetrised, which
        needs word-aligned inputs (frames == text tokens).
    graph_sim_scale_init (`float`, *optional*, defaults to 5.0):
        Initial value of the learnable positive scale `s` of the `R R^T` similarity before the row softmax.
    pos_bias_max_distance (`int`, *optional*, defaults to 32):
        Frame distances `|i - j|` are clipped to this value; one learnable bias per distance (B_pos).
    threshold_lambda_init (`float`, *optional*, defaults to 0.5):
        Initial `lambda` of the adaptive threshold `tau = mu + lambda * sigma` (Eq. 5), learnable per modality.
    threshold_soft_temp (`float`, *optional*, defaults to 0.1):
        Temperature (times sigma, floored at a hundredth of the mean edge value) of the soft mask
        `sigmoid((A - tau) / t)` through which `lambda` learns.
    threshold_relaxation (`str`, *optional*, defaults to `"band"`):
        How Eq. 5's hard mask `A >= tau`, which gives `lambda` no gradient, is relaxed. `"straight_through"`:
        the hard mask forward with the soft mask's gradient; `lambda` then only hears from edges that are
        already kept, never from the pairs just below the threshold that it decides about. `"band"`
        (default): pairs down to three temperatures below `tau` stay in the graph and every edge weighs
        `A * sigmoid((A - tau) / t)` forward and backward, so both sides of the threshold carry `lambda`'s
        gradient and an edge fades out (to 5% of its value) rather than vanishing at `tau`.
    graph_max_nodes (`int`, *optional*, defaults to 128):
        Audio / visual sequences longer than this are average-pooled by relative time into this many
        segments before graph building. `None` turns the cap off.
    text_graph (`str`, *optional*, defaults to `"dependency"`):
        `"dependency"`: the text graph comes from the `dependency_heads` input (see `DependencyParser`).
        `"chain"`: consecutive real tokens are linked; needs no parser and ignores `dependency_heads`.
    text_graph_directed (`bool`, *optional*, defaults to `False`):
        Keep the text arcs one-way (messages flow from head to dependent) instead of both ways.
    gat_layers (`int`, *optional*, defaults to 2):
        `GATConv` layers in the shared and in the fusion graph encoders.
    gat_heads (`int`, *optional*, defaults to 4):
        Attention heads of every GAT layer but the last (which has one). Must divide `hidden_size`.
    gat_dropout (`float`, *optional*, defaults to 0.1):
        Dropout on GAT attention coefficients and between GAT layers.
    use_anchor (`bool`, *optional*, defaults to `True`):
        Add the semantic anchor node (mean text state) and its edges to every graph. `False` is the paper's
        "w/o semantic anchor" ablation: no anchor node, no anchor edges and no `W_a`; the fusion graph then
        picks its cross-modal pairs by each node's affinity to the other modalities' mean state instead.
    fusion_topk (`int`, *optional*, defaults to 8):
        Nodes per modality (highest anchor affinity) that are cross-linked between modalities in the fusion
        graph. 0 disables cross-modal edges.
    aug_edge_drop (`float`, *optional*, defaults to 0.2):
        Probability of removing each intra-modality edge in the augmented view (training only).
    aug_edge_add (`float`, *optional*, defaults to 0.1):
        Random new edges in the augmented view, as a fraction of the sample's edge count (rounded up).
    contrastive_temperature (`float`, *optional*, defaults to 0.2):
        Temperature `eta` of the InfoNCE structural-consistency loss (Eq. 9).
    sup_num_classes (`int`, *optional*, defaults to 3):
        Polarity classes for the supervised loss derived from regression scores: 3 (negative / neutral /
        positive), 2 (negative / non-negative) or 7 (rounded score in [-3, 3]).
    sup_polarity_boundary (`float`, *optional*, defaults to 0.0):
        The score that separates negative from positive for `sup_num_classes` 2 and 3: 0 on the [-3, 3]
        scale of CMU-MOSI / MOSEI, 3.5 for the 1-5 ratings of ICT-MMMO. With 7 classes it must be 0.
    lambda_sup (`float`, *optional*, defaults to 0.1):
        Weight of the supervised classification loss on `z_ori` (Eq. 8). 0 disables it.
    lambda_self (`float`, *optional*, defaults to 0.1):
        Weight of the InfoNCE loss between the original and augmented views (Eq. 9). 0 disables it and
        skips the augmented view.
    lambda_align (`float`, *optional*, defaults to 0.1):
        Weight of `||z_fuse - z_ori||^2` (Eq. 10). 0 disables it.
    align_reduction (`str`, *optional*, defaults to `"mean"`):
        How Eq. 10 reduces over the `d` coordinates: `"mean"` (the squared distance divided by `d`) or
        `"sum"` (the squared norm as printed). Summed, the term grows with the width: at `d = 128` on
        MiniLM features it starts near 110 against a task loss near 1.3, so with a fine-tuning learning
        rate (5e-5) training spends its steps pulling the two views together and the prediction does not
        learn (MOSI validation MAE 1.43, correlation 0.21).
    head_input (`str`, *optional*, defaults to `"fuse"`):
        Which representation feeds the prediction head: `"fuse"` (z_fuse), `"ori"` (z_ori) or `"concat"`.
    reg_loss (`str`, *optional*, defaults to `"l1"`):
        Regression task loss: `"l1"` (MAE, the MOSI / MOSEI convention) or `"mse"`.
    feature_dropout (`float`, *optional*, defaults to 0.1):
        Dropout on the projected audio / visual features.
    classifier_dropout (`float`, *optional*, defaults to 0.1):
        Dropout inside the prediction head.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from hf_mmfusion import SSUConfig, SSUForSequenceClassification
    >>> config = SSUConfig(text_config=BertConfig(num_hidden_layers=2).to_dict(), num_labels=1)
    >>> model = SSUForSequenceClassification(config)
    ```
    """

    model_type = "ssu"

    cross_attn_heads: int = 4
    graph_proj_dim: int = 128
    graph_similarity: str = "attention_rows"
    graph_sim_scale_init: float | int = 5.0
    pos_bias_max_distance: int = 32
    threshold_lambda_init: float | int = 0.5
    threshold_soft_temp: float | int = 0.1
    threshold_relaxation: str = "band"
    graph_max_nodes: int | None = 128
    text_graph: str = "dependency"
    text_graph_directed: bool = False
    gat_layers: int = 2
    gat_heads: int = 4
    gat_dropout: float | int = 0.1
    use_anchor: bool = True
    fusion_topk: int = 8
    aug_edge_drop: float | int = 0.2
    aug_edge_add: float | int = 0.1
    contrastive_temperature: float | int = 0.2
    sup_num_classes: int = 3
    sup_polarity_boundary: float | int = 0.0
    lambda_sup: float | int = 0.1
    lambda_self: float | int = 0.1
    lambda_align: float | int = 0.1
    align_reduction: str = "mean"
    head_input: str = "fuse"
    reg_loss: str = "l1"
    feature_dropout: float | int = 0.1
    classifier_dropout: float | int = 0.1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_choice("graph_similarity", GRAPH_SIMILARITIES)
        self._check_choice("text_graph", TEXT_GRAPHS)
        self._check_choice("head_input", HEAD_INPUTS)
        self._check_choice("reg_loss", REG_LOSSES)
        self._check_choice("align_reduction", ALIGN_REDUCTIONS)
        self._check_choice("threshold_relaxation", THRESHOLD_RELAXATIONS)
        self._check_choice("sup_num_classes", SUP_NUM_CLASSES)
        for name in ("hidden_size", "graph_proj_dim", "cross_attn_heads", "gat_layers", "gat_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}")
        for name in ("cross_attn_heads", "gat_heads"):
            if self.hidden_size % getattr(self, name):
                raise ValueError(f"`hidden_size` ({self.hidden_size}) must be divisible by `{name}` ({getattr(self, name)})")
        if self.pos_bias_max_distance < 0:
            raise ValueError(f"`pos_bias_max_distance` must be >= 0, got {self.pos_bias_max_distance}")
        if self.graph_max_nodes is not None and self.graph_max_nodes < 1:
            raise ValueError(f"`graph_max_nodes` must be a positive integer or None, got {self.graph_max_nodes}")
        if self.fusion_topk < 0:
            raise ValueError(f"`fusion_topk` must be >= 0, got {self.fusion_topk}")
        for name in ("gat_dropout", "aug_edge_drop", "feature_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1), got {getattr(self, name)}")
        if self.sup_num_classes == 7 and self.sup_polarity_boundary != 0:
            raise ValueError(
                "`sup_polarity_boundary` must be 0 with sup_num_classes=7 (grades of the [-3, 3] scale), "
                f"got {self.sup_polarity_boundary}"
            )
        if self.aug_edge_add < 0:
            raise ValueError(f"`aug_edge_add` must be >= 0, got {self.aug_edge_add}")
        for name in ("graph_sim_scale_init", "threshold_soft_temp", "contrastive_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}")
        for name in ("lambda_sup", "lambda_self", "lambda_align"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0 (0 disables the loss term), got {getattr(self, name)}")

        if self.primary_modality is not None and self.primary_modality != self.guide_modality:
            raise ValueError(
                f"primary_modality must be SSU's guiding modality {self.guide_modality!r} (its states guide the "
                f"other graphs and make the anchor), got {self.primary_modality!r}"
            )

    def _check_choice(self, name: str, choices: tuple) -> None:
        if getattr(self, name) not in choices:
            raise ValueError(f"`{name}` must be one of {list(choices)}, got {getattr(self, name)!r}")

    @property
    def guide_modality(self) -> str:
        """The modality whose states guide the other graphs and make the anchor: text, else the first one."""
        return "text" if "text" in self.modalities else self.modalities[0]

    @property
    def graph_modalities(self) -> list[str]:
        """Modalities whose graph is built from text-guided similarity (every non-text one)."""
        return [m for m in self.modalities if m != "text"]


SSUConfig.register_for_auto_class()
