"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers the configs, models, feature extractors, processor and the
``multimodal-sentiment`` pipeline task with transformers (see ``hf_mmfusion.registration``). The public
names below load their modules on first use, so the import itself costs what
``from transformers import AutoConfig`` costs.
"""

import importlib as _importlib
import importlib.util as _importlib_util
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

from . import registration as _registration
from .utils.version import __version__  # noqa: F401  (the package version)

# Public name -> the module that defines it.
_PUBLIC = {
    "AcousticFeatureExtractor": "processing",
    "DependencyParser": "processing",
    "MMFusionProcessor": "processing",
    "VisualFeatureExtractor": "processing",
    "MMFusionDataCollator": "data.collator",
    "MultimodalSentimentPipeline": "inference.pipeline",
    "CLCRConfig": "models.configuration_clcr",
    "CLCRForSequenceClassification": "models.modeling_clcr",
    "CLCRModel": "models.modeling_clcr",
    "CLCRPreTrainedModel": "models.modeling_clcr",
    "SSUConfig": "models.configuration_ssu",
    "SSUForSequenceClassification": "models.modeling_ssu",
    "SSUModel": "models.modeling_ssu",
    "SSUPreTrainedModel": "models.modeling_ssu",
    "Explanation": "workflows.explanation",
    "explain": "workflows.explanation",
    "load_metric": "metrics",
    "retain_freed_memory": "utils.cpu_memory",
}
__all__ = [
    "AcousticFeatureExtractor",
    "CLCRConfig",
    "CLCRForSequenceClassification",
    "CLCRModel",
    "CLCRPreTrainedModel",
    "DependencyParser",
    "Explanation",
    "MMFusionDataCollator",
    "MMFusionProcessor",
    "MultimodalSentimentPipeline",
    "SSUConfig",
    "SSUForSequenceClassification",
    "SSUModel",
    "SSUPreTrainedModel",
    "VisualFeatureExtractor",
    "explain",
    "load_metric",
    "retain_freed_memory",
]

if TYPE_CHECKING:
    from .data.collator import MMFusionDataCollator
    from .inference.pipeline import MultimodalSentimentPipeline
    from .metrics import load_metric
    from .models.configuration_clcr import CLCRConfig
    from .models.configuration_ssu import SSUConfig
    from .models.modeling_clcr import CLCRForSequenceClassification, CLCRModel, CLCRPreTrainedModel
    from .models.modeling_ssu import SSUForSequenceClassification, SSUModel, SSUPreTrainedModel
    from .processing import (
        AcousticFeatureExtractor,
        DependencyParser,
        MMFusionProcessor,
        VisualFeatureExtractor,
    )
    from .utils.cpu_memory import retain_freed_memory
    from .workflows.explanation import Explanation, explain


def __getattr__(name: str):
    if name in _PUBLIC:
        _registration.install()
        value = getattr(_importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    # Submodules load on first access too (`hf_mmfusion.processing.DependencyParser`).
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        _registration.install()
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def _usage_only() -> bool:
    # `hf-mmfusion` / `hf-mmfusion --help` only print the command list: loading transformers for it would
    # cost seconds. Anything that then touches the package's names registers it (see __getattr__).
    argv = _sys.argv
    return (
        bool(argv) and _os.path.basename(argv[0]) == "hf-mmfusion"
        and (len(argv) == 1 or argv[1] in ("-h", "--help", "help"))
    )


if not _usage_only():
    _registration.install()
