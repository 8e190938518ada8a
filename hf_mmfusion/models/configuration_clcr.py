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

"""Configuration of CLCR (Cross-Level Co-Representation)."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers.utils import auto_docstring

from .configuration_common import MMFUSION_CONFIG_ARGS, MMFusionConfig

LEVEL_MIXES = ("none", "full", "partial")
BUDGET_STRENGTHS = ("relative", "absolute")
LEVEL_SELECTION_LOSSES = ("centered", "literal")


@auto_docstring(
    custom_intro="""
    Configuration of [`CLCRModel`] and [`CLCRForSequenceClassification`].

    CLCR builds a semantic hierarchy of `num_levels` levels per modality, splits every level into a
    shared and a private subspace (IntraCED: budgeted cross-modal exchange inside the shared subspace),
    then fuses the levels with learned anchors (InterCAD), under intra- and inter-level regularisers.

    Of [`PreTrainedConfig`]'s fields it reads `num_labels` and `problem_type`: one label means regression with
    MSE, several mean classification with cross-entropy or, for `problem_type="multi_label_classification"`,
    binary cross-entropy.
    """
)
@strict
class CLCRConfig(MMFusionConfig):
    __doc__ = MMFUSION_CONFIG_ARGS + r"""
    shared_dim (`int`, *optional*):
        Rank `r` of the shared subspace, `1 <= r < hidden_size`; defaults to `hidden_size // 2`. The
        private subspace has `hidden_size - r` dimensions; together they span the fusion width exactly.
    num_levels (`int`, *optional*, defaults to 3):
        Number of semantic levels (shallow, mid, deep in the paper).
    text_level_layers (`list[int]`, *optional*):
        Text-encoder layers tapped as levels (0 = embeddings). Defaults to `round(L/3), round(2L/3), L`
        for an `L`-layer encoder (4, 8, 12 for BERT-base). Needs `num_levels` entries.
    tcn_kernel_size (`int`, *optional*, defaults to 3):
        Odd kernel size of the audio/visual temporal convolutions.
    tcn_dilations (`list[int]`, *optional*, defaults to `[1, 2, 4, 8, 16, 32]`):
        Dilations of the residual TCN blocks, split evenly into `num_levels` stages; each stage's output
        is one level, so later levels see a wider temporal context.
    tcn_dropout (`float`, *optional*, defaults to 0.1):
        Dropout inside the TCN blocks.
    exchange_heads (`int`, *optional*, defaults to 4):
        Attention heads of the shared-subspace cross-modal exchange; must divide `hidden_size`.
    attention_dropout (`float`, *optional*, defaults to 0.1):
        Dropout on the exchange attention probabilities.
    position_gain_init (`float`, *optional*, defaults to 0.1):
        Initial gain `g` of each level's sinusoidal positional encoding. Level features are LayerNormed
        and projected with a fan-in-scaled initialisation, so they have about unit scale per dimension;
        a gain of 0.1 keeps the backbone signal, not the position table, in front at initialisation
        (with `1.0` the table is about as large as the signal). The gain is learned.
    budget_strength (`str`, *optional*, defaults to `"relative"`):
        Which shared evidence strength `e` enters the token activation `a = sigmoid(kappa * (e - tau))`.
        `"absolute"` is the paper's literal reading, `e = ||x_shared|| / sqrt(r)`. Level features are
        LayerNormed, so that norm is close to 1 for every token: `a` is then almost constant, the
        projection can only shrink every weight by the same amount and no token is ever left out.
        `"relative"` (default) standardises `e` over each sample's real tokens (zero mean, unit
        deviation), so `tau` acts as a threshold in units of the sample's spread and the budget chooses
        among tokens at any feature scale and any length.
    budget_kappa_init (`float`, *optional*, defaults to 4.0):
        Initial slope `kappa` of the token activation `sigmoid(kappa * (e - tau))` (kept positive by a
        softplus parametrisation).
    budget_tau_init (`float`, *optional*):
        Initial threshold `tau` on the strength `e`; defaults to 0 for `"relative"` strengths (the
        sample's mean strength) and 1 for `"absolute"` ones.
    budget_fraction_init (`float`, *optional*, defaults to 0.35):
        Initial learnable fraction of the valid tokens that the budget `k` allows, in (0, 1). The
        activations average 0.5, so a fraction below 0.5 makes the budget bind from the first step:
        with the default slope about two thirds of the tokens take part at initialisation (the paper's
        sensitivity study finds its best near a participation of 0.68), and the budget parameters get
        gradients from the start.
    budget_min_tokens (`float`, *optional*, defaults to 1.0):
        Smallest budget `k_min`; `k = k_min + fraction * (n_valid - k_min)`.
    use_budget_projection (`bool`, *optional*, defaults to `True`):
        Project the activations onto the capped simplex `{0 <= w <= 1, sum w <= k}`. `False` is the
        paper's "dense" variant (`w = a`).
    project_update_to_shared (`bool`, *optional*, defaults to `True`):
        Project the exchange update back onto the shared subspace so the private stream never receives
        cross-modal information.
    intra_gamma (`float`, *optional*, defaults to 1.0):
        Weight `gamma` of the within-modality shared/private leakage term of the intra-level loss.
    lambda_intra (`float`, *optional*, defaults to 0.1):
        Weight of the intra-level loss in the total objective.
    whiten_eps (`float`, *optional*, defaults to 0.1):
        Relative diagonal loading of the covariances in the whitened cross-correlation.
    whiten_null_correction (`bool`, *optional*, defaults to `True`):
        Subtract from every whitened-correlation term its value under independence, estimated on the same
        rows with one side shifted by half the rows, which pairs different samples (detached; it costs one
        extra product, since the shift leaves both covariances unchanged). With `N` paired rows against `p` dimensions the raw statistic sits
        near `p / N` even for independent data (0.54 at 64 rows and 64 dimensions), so at small batches it
        cannot tell dependence from chance. The corrected value is about 0 for independent data at every
        batch size and keeps the raw statistic's gradient. `False` gives the uncorrected statistic.
    intra_pair_segments (`int`, *optional*, defaults to 8):
        Relative-time segments each modality's private coordinates are pooled into to pair rows across
        modalities of different lengths (cross-modal private term).
    inter_lambdas (`list[float]`, *optional*, defaults to `[1.0, 1.0, 1.0]`):
        Weights of the three inter-level terms: private redundancy across levels, shared/private leakage
        across levels, and level-selection mass on incompatible anchors.
    lambda_inter (`float`, *optional*, defaults to 0.1):
        Weight of the inter-level loss in the total objective.
    level_selection_loss (`str`, *optional*, defaults to `"centered"`):
        Form of the level-selection term of the inter-level loss, `sum_{l != l'} alpha_l alpha_l' delta_ll'`.
        `"literal"`: with the paper's incompatibility `delta = 1 - cos >= 0` every mixture costs more than a
        one-hot `alpha`, so the term pushes every sample onto a single level and removes the hierarchy it
        is meant to stabilise (mean largest level weight 1.0 after a short training). `"centered"`
        (default) measures incompatibility against the sample's mean over level pairs,
        `delta_ll' - mean(delta)`: mixing levels that are more compatible than average lowers the loss,
        mixing less compatible ones raises it, and a one-hot `alpha` (or anchors that are all equally far
        apart) costs 0. It still moves mass away from incompatible pairs, as the paper intends, without
        rewarding the collapse.
    renormalize_level_mixture (`bool`, *optional*, defaults to `True`):
        LayerNorm (without parameters) each modality's level-mixed shared and private summaries (Eq. 9).
        The level summaries are LayerNormed and nearly orthogonal to each other, so their `alpha` mixture
        has norm `sqrt(sum alpha^2)` times theirs: the head's gradient then favours a one-hot `alpha` for
        its larger signal alone, whatever the levels contain. Renormalising keeps every mixture at the
        same scale. `False` is the paper's plain weighted sum.
    inter_incompat_weight_all_terms (`bool`, *optional*, defaults to `False`):
        Also weight each level pair of the first two inter-level terms by the anchors' incompatibility
        `1 - cos`. Needs `use_inter_cad`.
    level_mlp_hidden (`int`, *optional*):
        Hidden width of the two-layer level-weight MLP; defaults to `hidden_size`.
    head_hidden (`int`, *optional*):
        Hidden width of the classification/regression head; defaults to `hidden_size`.
    classifier_dropout (`float`, *optional*, defaults to 0.1):
        Dropout inside the head.
    reg_loss (`str`, *optional*, defaults to `"mse"`):
        Regression task loss: `"mse"` (the paper's) or `"l1"` (the MAE that MOSI / MOSEI / MMMO report).
    use_intra_ced (`bool`, *optional*, defaults to `True`):
        Ablation "w/o IntraCED" when `False`: no shared/private factorisation and no budget; every level
        exchanges its full features with unconstrained cross-modal attention. The exchanged features are
        the shared stream and the level's own features the private stream; the intra-level loss is 0.
    use_inter_cad (`bool`, *optional*, defaults to `True`):
        Ablation "w/o InterCAD" when `False`: no anchors, no learned level weights, no modality
        selection and no private gates; levels and present modalities are averaged uniformly and the
        level-selection term is 0.
    use_hierarchy (`bool`, *optional*, defaults to `True`):
        Ablation "w/o Hierarchy" when `False`: a single level (the deepest text layer and the last TCN
        stage); the cross-level terms are 0.
    level_mix (`str`, *optional*, defaults to `"none"`):
        Cross-level alignment ablation. `"full"`: every modality's levels are permuted so that no level
        sits at its true depth (text and visual shift by one, audio by two). `"partial"`: each modality
        keeps exactly one level in place (text level 1, audio level 2, visual level 3) and the other
        levels are permuted among themselves. Needs `num_levels >= 3` for `"partial"`.
    use_intra_regularizer (`bool`, *optional*, defaults to `True`):
        Ablation "w/o L_intra" when `False`.
    use_inter_regularizer (`bool`, *optional*, defaults to `True`):
        Ablation "w/o L_inter" when `False`.

    Example:

    ```python
    >>> from hf_mmfusion import CLCRConfig, CLCRForSequenceClassification
    >>> config = CLCRConfig(modalities=["audio", "visual"], audio_input_dim=74, visual_input_dim=35, num_labels=6)
    >>> model = CLCRForSequenceClassification(config)
    ```
    """

    model_type = "clcr"

    shared_dim: int | None = None
    num_levels: int = 3
    text_level_layers: list[int] | tuple[int, ...] | None = None
    tcn_kernel_size: int = 3
    tcn_dilations: list[int] | tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    tcn_dropout: float | int = 0.1
    exchange_heads: int = 4
    attention_dropout: float | int = 0.1
    position_gain_init: float | int = 0.1
    budget_strength: str = "relative"
    budget_kappa_init: float | int = 4.0
    budget_tau_init: float | int | None = None
    budget_fraction_init: float | int = 0.35
    budget_min_tokens: float | int = 1.0
    use_budget_projection: bool = True
    project_update_to_shared: bool = True
    intra_gamma: float | int = 1.0
    lambda_intra: float | int = 0.1
    whiten_eps: float | int = 0.1
    whiten_null_correction: bool = True
    intra_pair_segments: int = 8
    inter_lambdas: list[float | int] | tuple[float | int, ...] = (1.0, 1.0, 1.0)
    lambda_inter: float | int = 0.1
    level_selection_loss: str = "centered"
    renormalize_level_mixture: bool = True
    inter_incompat_weight_all_terms: bool = False
    level_mlp_hidden: int | None = None
    head_hidden: int | None = None
    classifier_dropout: float | int = 0.1
    reg_loss: str = "mse"
    use_intra_ced: bool = True
    use_inter_cad: bool = True
    use_hierarchy: bool = True
    level_mix: str = "none"
    use_intra_regularizer: bool = True
    use_inter_regularizer: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.shared_dim is None:
            self.shared_dim = max(1, self.hidden_size // 2)
        if self.budget_tau_init is None:
            self.budget_tau_init = 0.0 if self.budget_strength == "relative" else 1.0
        self.tcn_dilations = [int(v) for v in self.tcn_dilations]
        self.inter_lambdas = [float(v) for v in self.inter_lambdas]
        if self.text_level_layers is not None:
            self.text_level_layers = [int(v) for v in self.text_level_layers]
        self._validate_values()

    def _validate_values(self) -> None:
        d = self.hidden_size

        def positive(name: str) -> None:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")

        def non_negative(name: str) -> None:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite value >= 0, got {value}")

        def probability(name: str) -> None:
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {value}")

        for name in ("hidden_size", "num_levels", "tcn_kernel_size", "exchange_heads", "budget_kappa_init", "whiten_eps"):
            positive(name)
        for name in ("intra_gamma", "lambda_intra", "lambda_inter", "budget_min_tokens", "position_gain_init"):
            non_negative(name)
        for name in ("tcn_dropout", "attention_dropout", "classifier_dropout"):
            probability(name)
        if self.reg_loss not in ("mse", "l1"):
            raise ValueError(f"reg_loss must be 'mse' or 'l1', got {self.reg_loss!r}")
        if not 1 <= self.shared_dim < d:
            raise ValueError(f"shared_dim (r) must satisfy 1 <= r < hidden_size = {d}, got {self.shared_dim}")
        if d % self.exchange_heads != 0:
            raise ValueError(f"hidden_size ({d}) must be divisible by exchange_heads ({self.exchange_heads})")
        if self.tcn_kernel_size % 2 != 1:
            raise ValueError(f"tcn_kernel_size must be odd so frames keep their positions, got {self.tcn_kernel_size}")
        if not self.tcn_dilations or any(v < 1 for v in self.tcn_dilations):
            raise ValueError(f"tcn_dilations must be a non-empty list of integers >= 1, got {self.tcn_dilations}")
        if len(self.tcn_dilations) % self.num_levels != 0:
            raise ValueError(
                f"tcn_dilations ({len(self.tcn_dilations)} values) must split evenly into num_levels = "
                f"{self.num_levels} stages"
            )
        if not 0 < self.budget_fraction_init < 1:
            raise ValueError(f"budget_fraction_init must lie in (0, 1), got {self.budget_fraction_init}")
        if self.intra_pair_segments < 2:
            raise ValueError(f"intra_pair_segments must be >= 2, got {self.intra_pair_segments}")
        if len(self.inter_lambdas) != 3 or any(not (v >= 0 and math.isfinite(v)) for v in self.inter_lambdas):
            raise ValueError(
                f"inter_lambdas must be three finite weights >= 0 (private, shared-private, selection), got {self.inter_lambdas}"
            )
        for name in ("level_mlp_hidden", "head_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (= hidden_size), got {value}")
        if self.budget_strength not in BUDGET_STRENGTHS:
            raise ValueError(f"budget_strength must be one of {BUDGET_STRENGTHS}, got {self.budget_strength!r}")
        if self.level_selection_loss not in LEVEL_SELECTION_LOSSES:
            raise ValueError(
                f"level_selection_loss must be one of {LEVEL_SELECTION_LOSSES}, got {self.level_selection_loss!r}"
            )
        if self.level_mix not in LEVEL_MIXES:
            raise ValueError(f"level_mix must be one of {LEVEL_MIXES}, got {self.level_mix!r}")
        if self.level_mix != "none" and not self.use_hierarchy:
            raise ValueError("level_mix permutes levels and needs use_hierarchy=True")
        if self.level_mix == "full" and self.num_levels < 2:
            raise ValueError("level_mix='full' needs num_levels >= 2")
        if self.level_mix == "partial" and self.num_levels < 3:
            raise ValueError("level_mix='partial' keeps one level and permutes the others: it needs num_levels >= 3")
        if self.inter_incompat_weight_all_terms and not self.use_inter_cad:
            raise ValueError("inter_incompat_weight_all_terms uses the InterCAD anchors and needs use_inter_cad=True")
        if self.text_level_layers is not None:
            if len(self.text_level_layers) != self.num_levels:
                raise ValueError(
                    f"text_level_layers needs num_levels = {self.num_levels} layer indices, got {self.text_level_layers}"
                )
            if self.text_config is not None:
                layers = self.text_config.num_hidden_layers
                bad = [i for i in self.text_level_layers if not 0 <= i <= layers]
                if bad:
                    raise ValueError(
                        f"text_level_layers {self.text_level_layers} must lie in [0, {layers}] (the text encoder's layers)"
                    )

    @property
    def effective_num_levels(self) -> int:
        """Levels the model actually fuses: `num_levels`, or 1 without the hierarchy."""
        return self.num_levels if self.use_hierarchy else 1

    @property
    def private_dim(self) -> int:
        return self.hidden_size - self.shared_dim


CLCRConfig.register_for_auto_class()

__all__ = ["CLCRConfig"]
