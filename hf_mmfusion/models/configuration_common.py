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

"""Configuration fields shared by every fusion model in this package."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import auto_docstring

MODALITIES = ("text", "audio", "visual")


# The fields every fusion config shares, documented once: each model config's docstring starts with them.
MMFUSION_CONFIG_ARGS = r"""
    modalities (`list[str]`, *optional*, defaults to `["text", "audio", "visual"]`):
        The active modalities, any non-empty subset of `"text"`, `"audio"`, `"visual"`. A configured
        modality absent from a batch is treated as missing (masked out), not as an error.
    text_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of the text encoder, built with `AutoModel.from_config`. Used only when `"text"` is
        active; defaults to a `bert-base-uncased`-shaped `BertConfig` then. Ignored (set to `None`)
        without text.
    audio_input_dim (`int`, *optional*, defaults to 74):
        Width of one acoustic frame (74 for COVAREP on CMU-MOSEI, 5 for the MMSA CMU-MOSI subset).
    visual_input_dim (`int`, *optional*, defaults to 35):
        Width of one visual frame (35 for Facet on CMU-MOSEI, 20 for CMU-MOSI, 47 for Facet 4.1).
    hidden_size (`int`, *optional*, defaults to 128):
        The fusion width `d` every modality is projected to.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the normal initialiser of linear and embedding weights.
    label_offset (`float`, *optional*, defaults to 0.0):
        Initial bias of a regression head's output, in label units. `hf-mmfusion train` sets it to the
        training labels' mean, so a head for 1-5 ratings starts at their average instead of at 0.
    primary_modality (`str`, *optional*):
        A configured modality the fused representation starts from (`"text"` for sentiment: the words carry
        most of it). The model then starts as that modality's own model and the others enter only as far as
        training moves them. CLCR: modality selection (Eq. 10) gets a learnable bias per modality, starting
        `primary_modality_bias` above the others for this one; the other modalities' private gates (Eq. 11)
        start nearly closed (bias `-primary_modality_bias`); the cross-modal exchange's output projection
        (Eq. 4) starts at zero. SSU: it must be the guiding modality (text, or the first configured one
        without text); the fusion graph sends messages from it to the others but not back (no edge from
        another modality's node into its nodes or the fusion anchor), and each other modality's readout
        enters `z_ori` / `z_fuse` through a learnable gate `sigmoid(g_m)`, `g_m` starting at
        `-primary_modality_bias`. On a few speakers the other modalities' features identify the speaker, and
        a model that mixes them in at full weight from the start fits the speakers' sentiment instead of what
        transfers (see `model_notes.md`). The model's `load_primary_model` (`hf-mmfusion train --primary_model`)
        fills this modality's path from a trained model of it alone and freezes it. `None` is the papers'
        symmetric start.
    primary_modality_bias (`float`, *optional*, defaults to 5.0):
        Strength of that start: the other modalities' gates start at `sigmoid(-b)` (0.007 at 5.0) and, in
        CLCR with three modalities, the primary one's selection weight at `e^b / (e^b + 2)` (0.987). Under
        Adam a bias moves by about the learning rate per step, so within a short fine-tuning it stays near its
        start and the head reads the other modalities through their small weights; chosen on inner validation
        splits (`model_notes.md`). Used only with `primary_modality`.
"""


@auto_docstring(
    custom_intro="""
    Fields every fusion model shares. Model configs subclass this one.
    """
)
# Plain @strict, as transformers' own configs: PreTrainedConfig already accepts keys it does not know (a newer
# config.json still loads and keeps them) for every subclass without its own __init__.
@strict
class MMFusionConfig(PreTrainedConfig):
    __doc__ = MMFUSION_CONFIG_ARGS

    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
    }

    modalities: list[str] | tuple[str, ...] = ("text", "audio", "visual")
    text_config: dict | PreTrainedConfig | None = None
    audio_input_dim: int = 74
    visual_input_dim: int = 35
    hidden_size: int = 128
    initializer_range: float = 0.02
    label_offset: float | int = 0.0
    primary_modality: str | None = None
    primary_modality_bias: float | int = 5.0

    def __post_init__(self, **kwargs):
        # Before anything derives a width from them (strict's own type check runs after __post_init__).
        for name, field in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if field.type in ("int", "float | int") and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(self.modalities, str):
            self.modalities = [self.modalities]
        self.modalities = [m for m in MODALITIES if m in self.modalities] + [
            m for m in self.modalities if m not in MODALITIES
        ]
        if not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got an empty list")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"modalities must be a subset of {MODALITIES}, got unknown {unknown}")
        if self.primary_modality is not None and self.primary_modality not in self.modalities:
            raise ValueError(
                f"primary_modality must be one of the configured modalities {list(self.modalities)}, "
                f"got {self.primary_modality!r}"
            )
        if not (self.primary_modality_bias >= 0 and math.isfinite(self.primary_modality_bias)):
            raise ValueError(f"primary_modality_bias must be a finite value >= 0, got {self.primary_modality_bias}")
        if "text" in self.modalities and self.text_config is None:
            self.text_config = {}
        elif "text" not in self.modalities:
            self.text_config = None
        super().__post_init__(**kwargs)

    @property
    def text_hidden_size(self) -> int | None:
        return None if self.text_config is None else self.text_config.hidden_size

    def get_text_config(self, *args, **kwargs):
        # Generation and embedding utilities look the text config up here; without text we are our own.
        return self.text_config if self.text_config is not None else self
