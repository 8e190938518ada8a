"""The package's entries in transformers' registries, added without importing the classes behind them.

``import hf_mmfusion`` registers the configs with ``AutoConfig`` as they are, and everything else as a
:class:`LazyClass`: the models with ``AutoModel`` / ``AutoModelForSequenceClassification``, the frame
feature extractors with ``AutoFeatureExtractor``, the processor with ``AutoProcessor``; the
``multimodal-sentiment`` task goes into the pipeline registry as a dotted path, the form of
transformers' own tasks. Registering the model classes themselves would import
``transformers.modeling_utils``: 1.4 s of the 3.4 s the import cost; the processor's and the
pipeline's registries live in modules as heavy, so those two are filled by a post-import hook (wrapt)
the moment transformers loads them. Hooks and entries import nothing of the package: a registry that
transformers loads from inside one of its own half-executed modules never sees a half-executed module of
ours either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial

import wrapt

PIPELINE_TASK = "multimodal-sentiment"

# Registry key -> (module, class name).
_FEATURE_EXTRACTORS = {
    "mmfusion_acoustic": ("hf_mmfusion.processing.feature_extraction_acoustic", "AcousticFeatureExtractor"),
    "mmfusion_visual": ("hf_mmfusion.processing.feature_extraction_visual", "VisualFeatureExtractor"),
}
_PROCESSOR = "hf_mmfusion.processing.processing_mmfusion"

_installed = False


class LazyClass:
    """A registry entry that stands for ``module.name`` and imports it on first use.

    transformers reads a few attributes of an entry without using it (``__name__`` to find a processor
    by the class name saved in its config, ``__module__``, a model's ``config_class``); those are
    answered here. Any other attribute, or a call, imports the class, puts it in this entry's place in
    its registry through ``register`` (once) and forwards to it. Code that treats the entry as a class
    gets the class: a ``class X(entry)`` statement subclasses it, ``isinstance`` / ``issubclass`` test
    against it. The entry is not a ``type`` itself, so ``inspect.isclass(entry)`` is False until the
    registry holds the class.

    Args:
        module (`str`): Module that defines the class.
        name (`str`): The class's name in that module.
        register (`Callable[[type], None]`): Registers the imported class in this entry's place.
        known: Attributes answered without importing, e.g. ``config_class``.
    """

    def __init__(self, module: str, name: str, register: Callable[[type], None], **known):
        self.__module__ = module
        self.__name__ = self.__qualname__ = name
        self._lazy_register = register
        self._lazy_class = None
        self.__dict__.update(known)

    def resolve(self) -> type:
        if self._lazy_class is None:
            cls = getattr(importlib.import_module(self.__module__), self.__name__)
            self._lazy_register(cls)
            self._lazy_class = cls
        return self._lazy_class

    def __getattr__(self, attribute: str):
        # Dunder lookups come from copy, pickle and introspection; importing for them would surprise.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self.resolve(), attribute)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __mro_entries__(self, bases: tuple) -> tuple[type]:
        return (self.resolve(),)

    def __instancecheck__(self, instance) -> bool:
        return isinstance(instance, self.resolve())

    def __subclasscheck__(self, subclass) -> bool:
        return issubclass(subclass, self.resolve())

    def __repr__(self) -> str:
        return f"<class '{self.__module__}.{self.__name__}', imported on first use>"


def _add(register: Callable[[type], None], module: str, name: str, **known) -> None:
    register(LazyClass(module, name, register, **known))


def _register_feature_extractors() -> None:
    from transformers import AutoFeatureExtractor

    # transformers keys this registry by config class; the extractors serve several model configs (and
    # none), so they go in under names of their own. Lookups by the class name saved in
    # `preprocessor_config.json` go through these entries.
    for key, (module, name) in _FEATURE_EXTRACTORS.items():
        _add(partial(AutoFeatureExtractor.register, key, exist_ok=True), module, name)


def _register_processor(processing_auto) -> None:
    _add(partial(processing_auto.AutoProcessor.register, "mmfusion", exist_ok=True), _PROCESSOR, "MMFusionProcessor")


def _register_pipeline(pipelines) -> None:
    from transformers import AutoModelForSequenceClassification

    # `pipeline()` imports a dotted-path `impl` when the task is asked for. `register_pipeline` would
    # need the class itself, and would also mark it for `save_pretrained` to copy the pipeline's code
    # into checkpoints, which carry the model code only.
    pipelines.PIPELINE_REGISTRY.supported_tasks[PIPELINE_TASK] = {
        "impl": "hf_mmfusion.inference.pipeline.MultimodalSentimentPipeline",
        "pt": (AutoModelForSequenceClassification,),
        "type": "multimodal",
    }


def install() -> None:
    """Registers everything; calls after one that succeeded do nothing."""
    global _installed
    if _installed:
        return
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from .models.configuration_clcr import CLCRConfig
    from .models.configuration_ssu import SSUConfig

    for config, module, base, head in (
        (CLCRConfig, "hf_mmfusion.models.modeling_clcr", "CLCRModel", "CLCRForSequenceClassification"),
        (SSUConfig, "hf_mmfusion.models.modeling_ssu", "SSUModel", "SSUForSequenceClassification"),
    ):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        _add(partial(AutoModel.register, config, exist_ok=True), module, base, config_class=config)
        _add(partial(AutoModelForSequenceClassification.register, config, exist_ok=True), module, head,
             config_class=config)
    _register_feature_extractors()
    wrapt.register_post_import_hook(_register_processor, "transformers.models.auto.processing_auto")
    wrapt.register_post_import_hook(_register_pipeline, "transformers.pipelines")
    # Only now: an import that failed or was interrupted above leaves the next one to register again.
    _installed = True
