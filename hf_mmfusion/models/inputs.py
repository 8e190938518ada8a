"""Validation and normalisation of the model inputs both fusion models accept.

Every error is a ``ValueError`` naming the input and the expected shape. A configured modality that
a batch lacks is not an error: it comes back fully masked (one padded slot, mask all false).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .configuration_common import MODALITIES


@dataclass
class ModalityInputs:
    """Normalised inputs: per non-text modality ``features[B, T, D]`` (padding zeroed) and ``mask[B, T]``."""

    batch_size: int
    features: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    text_present: bool


def _batch_of(name: str, tensor: torch.Tensor, sizes: dict[str, int]) -> None:
    if tensor.dim() == 0:
        raise ValueError(f"`{name}` must have a batch dimension, got a scalar")
    sizes[name] = tensor.shape[0]


def _check_mask(name: str, mask: torch.Tensor | None, expected: tuple[int, int], owner: str) -> None:
    if mask is not None and tuple(mask.shape) != tuple(expected):
        raise ValueError(
            f"`{name}` must have shape [batch, length] = {list(expected)} to match `{owner}`, got {list(mask.shape)}"
        )


def _check_finite(name: str, values: torch.Tensor, mask: torch.Tensor | None) -> None:
    real = values if mask is None else values[mask.bool()]
    if not torch.isfinite(real).all():
        raise ValueError(
            f"`{name}` contains NaN or infinite values at real (unmasked) positions; clean them first "
            "(the feature extractors' `non_finite` option does this)"
        )


def prepare_inputs(
    config,
    *,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    audio_features: torch.Tensor | None = None,
    audio_attention_mask: torch.Tensor | None = None,
    visual_features: torch.Tensor | None = None,
    visual_attention_mask: torch.Tensor | None = None,
    dependency_heads: torch.Tensor | None = None,
) -> ModalityInputs:
    """Check every given input against ``config`` and return the non-text streams ready to encode."""
    modalities = tuple(config.modalities)
    given = {
        "text": input_ids is not None or inputs_embeds is not None,
        "audio": audio_features is not None,
        "visual": visual_features is not None,
    }
    for modality in MODALITIES:
        if given[modality] and modality not in modalities:
            field = {"text": "input_ids", "audio": "audio_features", "visual": "visual_features"}[modality]
            raise ValueError(
                f"`{field}` was given but this model is configured for modalities {list(modalities)}; "
                f"drop the input or use a model whose config.modalities includes {modality!r}"
            )
    if not any(given.values()):
        raise ValueError(
            f"no input for any configured modality {list(modalities)}: pass at least one of "
            "`input_ids` [batch, tokens], `audio_features` [batch, frames, audio_input_dim], "
            "`visual_features` [batch, frames, visual_input_dim]"
        )

    sizes: dict[str, int] = {}
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("pass either `input_ids` or `inputs_embeds`, not both")
    if given["text"]:
        text = input_ids if input_ids is not None else inputs_embeds
        name = "input_ids" if input_ids is not None else "inputs_embeds"
        if input_ids is not None and input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape [batch, tokens], got {list(input_ids.shape)}")
        if inputs_embeds is not None and inputs_embeds.dim() != 3:
            raise ValueError(f"`inputs_embeds` must have shape [batch, tokens, hidden], got {list(inputs_embeds.shape)}")
        if text.shape[1] == 0:
            raise ValueError(f"`{name}` is empty (0 tokens); the text must hold at least one token")
        _batch_of(name, text, sizes)
        _check_mask("attention_mask", attention_mask, tuple(text.shape[:2]), name)
        _check_mask("token_type_ids", token_type_ids, tuple(text.shape[:2]), name)
        _check_mask("dependency_heads", dependency_heads, tuple(text.shape[:2]), name)
        if inputs_embeds is not None:
            _check_finite("inputs_embeds", inputs_embeds, attention_mask)

    features, masks = {}, {}
    for modality, feats, mask in (
        ("audio", audio_features, audio_attention_mask),
        ("visual", visual_features, visual_attention_mask),
    ):
        if modality not in modalities:
            continue
        width = getattr(config, f"{modality}_input_dim")
        name = f"{modality}_features"
        if feats is not None:
            if feats.dim() != 3 or feats.shape[-1] != width:
                raise ValueError(
                    f"`{name}` must have shape [batch, frames, {width}] ({modality}_input_dim), got {list(feats.shape)}"
                )
            if feats.shape[1] == 0:
                raise ValueError(f"`{name}` has 0 frames; pass at least one frame or omit the modality")
            _batch_of(name, feats, sizes)
            _check_mask(f"{modality}_attention_mask", mask, tuple(feats.shape[:2]), name)
            _check_finite(name, feats, mask)
        elif mask is not None:
            raise ValueError(f"`{modality}_attention_mask` was given without `{name}`")

    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs disagree on the batch size: {sizes}")
    batch_size = next(iter(sizes.values()))

    for modality, feats, mask in (
        ("audio", audio_features, audio_attention_mask),
        ("visual", visual_features, visual_attention_mask),
    ):
        if modality not in modalities:
            continue
        if feats is None:
            ref = input_ids if input_ids is not None else (inputs_embeds if inputs_embeds is not None else None)
            for other in (audio_features, visual_features):
                if ref is None and other is not None:
                    ref = other
            device = ref.device
            dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            width = getattr(config, f"{modality}_input_dim")
            features[modality] = torch.zeros(batch_size, 1, width, device=device, dtype=dtype)
            masks[modality] = torch.zeros(batch_size, 1, dtype=torch.bool, device=device)
        else:
            m = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device) if mask is None else mask.bool()
            # torch.where (not a multiply) so NaN or inf sitting in padded frames cannot leak.
            features[modality] = torch.where(m.unsqueeze(-1), feats, torch.zeros((), dtype=feats.dtype, device=feats.device))
            masks[modality] = m
    return ModalityInputs(batch_size=batch_size, features=features, masks=masks, text_present=given["text"])
