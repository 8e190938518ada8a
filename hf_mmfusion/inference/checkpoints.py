"""Saved checkpoints: refusing what cannot be this package's model before its weights load, and loading a model
with its processor from a folder or a Hub id."""

from __future__ import annotations

from pathlib import Path

from ..utils.sources import model_source
from ..utils.text import listed


def _find_file(name_or_path: str, filename: str, revision: str | None = None, local_files_only: bool = False):
    from transformers.utils import cached_file

    return cached_file(
        name_or_path, filename, revision=revision, local_files_only=local_files_only,
        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
    )


def _safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorError as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); the weights are damaged or incomplete: "
            "save or download the checkpoint again"
        ) from err


def _torch_shapes(path: str) -> dict[str, tuple[int, ...]]:
    import pickle

    import torch

    try:
        # Only tensors and plain containers unpickle: a payload that would run code is refused here.
        stored = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} was refused: it holds Python objects other than tensors, which could run code when "
            "loaded; only plain weight files are read (save the model with save_pretrained, as safetensors)"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path} is not a readable PyTorch weights file ({first})") from err
    if not isinstance(stored, dict) or not all(torch.is_tensor(v) for v in stored.values()):
        raise ValueError(f"{path} does not hold a state dict (names mapped to tensors)")
    return {key: tuple(value.shape) for key, value in stored.items()}


def checkpoint_weight_shapes(
    name_or_path: str, revision: str | None = None, local_files_only: bool = False
) -> dict[str, tuple[int, ...]]:
    """Shape of each tensor stored in a checkpoint (a directory or a Hub id), read from the file headers.

    A damaged ``model.safetensors`` or a ``pytorch_model.bin`` that is not a plain state dict raises a
    ``ValueError`` naming the file.
    """
    import json

    def find(filename: str):
        return _find_file(name_or_path, filename, revision, local_files_only)

    index = find("model.safetensors.index.json")
    if index:
        try:
            with open(index) as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index} is not a safetensors index (a JSON object with a weight_map)") from err
        shapes = {}
        for shard in shards:
            path = find(shard)
            if not path:
                raise ValueError(f"checkpoint {name_or_path!r} lacks {shard}, listed in model.safetensors.index.json")
            shapes.update(_safetensors_shapes(path))
        return shapes
    single = find("model.safetensors")
    if single:
        return _safetensors_shapes(single)
    legacy = find("pytorch_model.bin")
    if legacy:
        return _torch_shapes(legacy)
    raise ValueError(f"{name_or_path!r} holds no model weights (model.safetensors or pytorch_model.bin)")


def checkpoint_weight_names(name_or_path: str, revision: str | None = None) -> set[str]:
    """Names of the tensors stored in a checkpoint (a directory or a Hub id), read from the file headers."""
    return set(checkpoint_weight_shapes(name_or_path, revision))


def check_checkpoint_weights(
    model, name_or_path: str, revision: str | None = None, *, names: bool = True, local_files_only: bool = False
) -> None:
    """Refuse a model whose checkpoint does not hold exactly its weights, in the shapes its config gives.

    ``from_pretrained`` fills missing parameters with random values and drops unexpected ones, with only
    a log line: a checkpoint without its classifier, or saved by the other model type, would predict
    noise. Raises a ``ValueError`` naming the missing and unexpected weights (``names=False`` checks the
    shapes only) and each weight whose stored shape differs from the model's (a ``config.json`` edited or
    copied from another run). ``model`` may live on the meta device, so this can run before loading.
    """
    stored = checkpoint_weight_shapes(name_or_path, revision, local_files_only)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    described = f"checkpoint {name_or_path!r} does not match its {type(model).__name__} (model_type {model.config.model_type!r})"
    mismatched = sorted(key for key in expected.keys() & stored.keys() if expected[key] != stored[key])
    if mismatched:
        shapes = [f"{key} is {list(stored[key])} in the weights, {list(expected[key])} by config.json" for key in mismatched]
        raise ValueError(
            f"{described}: {len(mismatched)} weights have other shapes than config.json gives "
            f"({listed(shapes, 4, '; ')}); config.json belongs to another model: use the one saved with these weights"
        )
    missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    if not names or (not missing and not unexpected):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} weights ({listed(missing, 8)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights ({listed(unexpected, 8)})")
    raise ValueError(
        f"{described}: {'; '.join(parts)}. It would run with random parameters; "
        "use the checkpoint the model was saved to, or retrain"
    )


PACKAGE_MODEL_TYPES = ("clcr", "ssu")


def _is_mmfusion_processor(processor_config: dict) -> bool:
    return processor_config.get("processor_class") == "MMFusionProcessor"


def check_checkpoint(
    name_or_path: str, *, trust_remote_code: bool = False, revision: str | None = None, strict: bool = True,
    local_files_only: bool = False,
) -> None:
    """Everything about a saved checkpoint that can be refused before its weights load, each as one
    ``ValueError`` naming the file: no ``config.json``, a ``model_type`` this package does not read (CLCR,
    SSU, or the text-only baseline: a transformers text classifier saved with an ``MMFusionProcessor``),
    unreadable or unsafe weight files, and weights that do not fit the config (see
    :func:`check_checkpoint_weights`; ``strict=False`` checks the shapes only)."""
    import json

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_file = _find_file(name_or_path, "config.json", revision, local_files_only)
    if not config_file:
        raise ValueError(
            f"{name_or_path!r} has no config.json: it is not a model saved by this package "
            "(`hf-mmfusion train` writes config.json, the weights and the processor)"
        )
    try:
        config_dict = json.loads(Path(config_file).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file} is not valid JSON ({err})") from err
    if not isinstance(config_dict, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")
    model_type = config_dict.get("model_type")
    remote = trust_remote_code and "auto_map" in config_dict
    known = ", ".join(repr(t) for t in PACKAGE_MODEL_TYPES)
    if not remote and (model_type not in CONFIG_MAPPING):
        raise ValueError(
            f"{config_file} has model_type {model_type!r}, which this package does not know: it reads {known} "
            "models and its text-only baseline (a transformers text model such as 'bert'); "
            f"{name_or_path!r} is not one of its checkpoints"
        )
    if model_type not in PACKAGE_MODEL_TYPES and not remote:
        processor_file = _find_file(name_or_path, "processor_config.json", revision, local_files_only)
        processor_config = json.loads(Path(processor_file).read_text()) if processor_file else {}
        if not isinstance(processor_config, dict) or not _is_mmfusion_processor(processor_config):
            raise ValueError(
                f"{name_or_path!r} is a {model_type!r} model without an MMFusionProcessor: it is not one of this "
                f"package's checkpoints ({known} models, or the text-only baseline `hf-mmfusion train "
                "--model_type baseline` saves)"
            )
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision, "local_files_only": local_files_only}
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    # Built without memory or initialisation cost, only to know which weights, in which shapes, the config asks for.
    with torch.device("meta"):
        skeleton = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    check_checkpoint_weights(skeleton, name_or_path, revision, names=strict, local_files_only=local_files_only)


def model_modalities(config) -> tuple[str, ...]:
    """The modalities a model reads: its config's ``modalities``, or text alone for the baseline (a plain
    transformers text classifier, whose config has no such field)."""
    return tuple(getattr(config, "modalities", None) or ("text",))


def check_text_length(model, max_length: int) -> None:
    """``max_length`` must fit the text encoder's position table."""
    # A plain text model (the baseline) has neither `modalities` nor a `text_config`: its config is the text's.
    modalities = model_modalities(model.config)
    text_config = getattr(model.config, "text_config", None) or model.config
    limit = getattr(text_config, "max_position_embeddings", None)
    if "text" in modalities and limit is not None and max_length > limit:
        raise ValueError(f"--max_text_length {max_length} exceeds the text encoder's maximum of {limit} positions")



def load_pretrained(
    name_or_path: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
    strict: bool = True,
    progress: bool = True,
):
    """(model in eval mode, processor) from a saved directory or a Hub id, through the Auto classes.

    The checkpoint is checked before its weights load (:func:`hf_mmfusion.inference.checkpoints.check_checkpoint`): a
    missing folder, a file, an unknown ``model_type``, damaged or unsafe weight files and weights of other
    shapes than ``config.json`` gives raise a ``ValueError`` (an ``OSError`` for a path or a Hub model that
    cannot be found). ``strict`` also refuses a checkpoint whose weights are not exactly the model's
    (:func:`hf_mmfusion.inference.checkpoints.check_checkpoint_weights`); ``progress=False`` hides the loading bar. The
    text-only baseline (``train --model_type baseline``) loads too: its modalities are text alone
    (:func:`hf_mmfusion.inference.checkpoints.model_modalities`).
    """
    from transformers import AutoModelForSequenceClassification, AutoProcessor
    from transformers.utils import logging as hf_logging

    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision, **model_source(name_or_path, "model", revision)}
    check_checkpoint(name_or_path, strict=strict, **kwargs)
    bars = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    # transformers looks for a PEFT adapter without passing `local_files_only` on: it must be told separately.
    adapter = {"adapter_kwargs": {"local_files_only": True}} if kwargs.get("local_files_only") else {}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs, **adapter)
    finally:
        if bars and not progress:
            hf_logging.enable_progress_bar()
    processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    return model.eval(), processor


def is_regression(model) -> bool:
    return model.config.num_labels == 1 or getattr(model.config, "problem_type", None) == "regression"

