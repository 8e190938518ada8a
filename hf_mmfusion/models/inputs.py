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
    dtype: torch.dtype | None = None,
) -> ModalityInputs:
    """Check every given input against ``config`` and return the non-text streams ready to encode.

    With ``dtype`` (the model's), frame features of any real or integer dtype come back in it, so a
    bf16 model takes float32 frames and the reverse; ``inputs_embeds`` is checked but cast by the caller
    (see :func:`cast_embeddings`).
    """
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
        positions = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
        if positions is not None and text.shape[1] > positions:
            raise ValueError(
                f"`{name}` has {text.shape[1]} tokens, more than the text encoder's {positions} positions; "
                f"truncate the text (the processor's `max_length`) to at most {positions} tokens"
            )
        if input_ids is not None and (input_ids.is_floating_point() or input_ids.is_complex()):
            raise ValueError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}")
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
            if feats.is_complex() or feats.dtype == torch.bool:
                raise ValueError(f"`{name}` must hold real numbers, got dtype {feats.dtype}")
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
            fill = dtype or (ref.dtype if ref.is_floating_point() else torch.get_default_dtype())
            width = getattr(config, f"{modality}_input_dim")
            features[modality] = torch.zeros(batch_size, 1, width, device=device, dtype=fill)
            masks[modality] = torch.zeros(batch_size, 1, dtype=torch.bool, device=device)
        else:
            if dtype is not None and feats.dtype != dtype:
                feats = feats.to(dtype)
            elif not feats.is_floating_point():
                feats = feats.to(torch.get_default_dtype())
            m = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device) if mask is None else mask.bool()
            # torch.where (not a multiply) so NaN or inf sitting in padded frames cannot leak.
            features[modality] = torch.where(m.unsqueeze(-1), feats, torch.zeros((), dtype=feats.dtype, device=feats.device))
            masks[modality] = m
    return ModalityInputs(batch_size=batch_size, features=features, masks=masks, text_present=given["text"])


def cast_embeddings(inputs_embeds: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``inputs_embeds`` in the model's dtype (float64 / float32 / bf16 callers alike)."""
    if inputs_embeds is None or inputs_embeds.dtype == dtype:
        return inputs_embeds
    return inputs_embeds.to(dtype)


INTEGER_DTYPES = (torch.long, torch.int, torch.int16, torch.int8, torch.uint8)


def check_labels(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Validate ``labels`` for the head's ``logits`` and settle ``config.problem_type``; returns the labels,
    regression and multi-label ones in the logits' dtype (what the losses need).

    Regression: ``[batch]`` or ``[batch, num_labels]`` finite numbers. Single-label classification:
    ``[batch]`` integer class ids in ``[0, num_labels)``. Multi-label: ``[batch, num_labels]`` floats.
    Anything else is a ``ValueError`` naming the expected shape (never a silent broadcast).
    """
    if not torch.is_tensor(labels):
        raise ValueError(f"`labels` must be a tensor, got {type(labels).__name__}")
    batch, num_labels = logits.shape[0], logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in INTEGER_DTYPES:
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    problem = config.problem_type
    if problem == "regression":
        if labels.shape[0:1] != (batch,) or labels.numel() != batch * num_labels:
            raise ValueError(
                f"`labels` must have shape [batch] or [batch, {num_labels}] = [{batch}] for regression, "
                f"got {list(labels.shape)}"
            )
        if labels.is_floating_point() and not torch.isfinite(labels).all():
            raise ValueError("`labels` contains NaN or infinite scores; drop or fix those rows")
    elif problem == "single_label_classification":
        if labels.dtype not in INTEGER_DTYPES or labels.numel() != batch or labels.shape[0:1] != (batch,):
            raise ValueError(
                f"`labels` must have shape [batch] = [{batch}] with integer class ids, got {list(labels.shape)} "
                f"of dtype {labels.dtype}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"`labels` must hold class ids in [0, {num_labels - 1}], got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
    elif problem == "multi_label_classification":
        if tuple(labels.shape) != (batch, num_labels):
            raise ValueError(f"`labels` must have shape [batch, {num_labels}] for multi-label, got {list(labels.shape)}")
    else:
        raise ValueError(f"unknown problem_type {problem!r}")
    return labels if problem == "single_label_classification" else labels.to(logits.dtype)
