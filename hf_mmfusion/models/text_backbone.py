"""Text encoder wrapper that exposes the hidden states of chosen layers ("level taps")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoModel


def default_level_layers(num_layers: int, num_levels: int = 3) -> list[int]:
    """Layers ``round(L/3), round(2L/3), L`` (generalised to ``num_levels``), at least layer 1."""
    return [max(1, round(num_layers * (i + 1) / num_levels)) for i in range(num_levels)]


class TextLevelEncoder(nn.Module):
    """A transformers text encoder built from ``text_config`` that returns chosen layers' hidden states.

    ``hidden_states[i]`` is the output of layer ``i`` (0 = embeddings). No weights are downloaded here:
    pretrained weights arrive through ``from_text_pretrained`` or ``from_pretrained``.

    Shapes: ``input_ids[B, T] -> (list of [B, T, H] per requested layer, all hidden states)``.
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
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        layers: Sequence[int] | None = None,
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        kwargs = {"attention_mask": attention_mask, "output_hidden_states": True, "return_dict": True}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        out = self.model(**kwargs)
        hidden = out.hidden_states
        layers = [len(hidden) - 1] if layers is None else list(layers)
        return [hidden[i] for i in layers], hidden


def check_level_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    layers = [int(i) for i in layers]
    bad = [i for i in layers if not 0 <= i <= num_layers]
    if bad:
        raise ValueError(f"text_level_layers {layers} must lie in [0, {num_layers}] (the text encoder's layers)")
    return layers
