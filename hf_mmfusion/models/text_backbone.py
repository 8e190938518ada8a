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

"""Text encoder wrapper that exposes the hidden states of chosen layers ("level taps")."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import BaseModelOutput


def default_level_layers(num_layers: int, num_levels: int = 3) -> list[int]:
    """Layers ``round(L/3), round(2L/3), L`` (generalised to ``num_levels``), at least layer 1."""
    return [max(1, round(num_layers * (i + 1) / num_levels)) for i in range(num_levels)]


class TextLevelEncoder(nn.Module):
    """A transformers text encoder built from ``text_config`` that returns chosen layers' hidden states.

    ``hidden_states[i]`` is the output of layer ``i`` (0 = embeddings). No weights are downloaded here:
    pretrained weights arrive through ``from_text_pretrained`` or ``from_pretrained``.

    Shapes: ``input_ids[B, T] -> (mask[B, T], output)`` with ``output.hidden_states`` a tuple of
    ``num_layers + 1`` tensors ``[B, T, H]``.
    """

    def __init__(self, text_config):
        super().__init__()
        try:
            # The pooler is never used; leaving it out keeps every parameter trainable by our losses.
            self.model = AutoModel.from_config(text_config, add_pooling_layer=False)
        except TypeError:
            self.model = AutoModel.from_config(text_config)

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = True,
        output_attentions: bool | None = False,
    ) -> tuple[torch.Tensor, BaseModelOutput]:
        """Run the encoder on ids or embeddings.

        Returns the token mask (``[B, T]`` bool, all real without ``attention_mask``) and the encoder's output,
        whose ``hidden_states`` (when requested) are the level taps. ``output_hidden_states`` is handed to the
        encoder as is (``None`` for its config's default, a list of layers to capture only those).
        """
        text = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        else:
            mask = attention_mask.bool()
        kwargs = {"attention_mask": mask.long(), "output_hidden_states": output_hidden_states, "return_dict": True}
        # Passed only when asked: not every encoder accepts every argument.
        if output_attentions:
            kwargs["output_attentions"] = True
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        return mask, self.model(**kwargs)

