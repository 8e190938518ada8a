"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers every model, config, processor and feature extractor with the
transformers Auto classes.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

__all__ = [
    "AcousticFeatureExtractor",
    "MMFusionDataCollator",
    "MMFusionProcessor",
    "MultimodalSentimentPipeline",
    "VisualFeatureExtractor",
    "CLCRConfig",
    "CLCRForSequenceClassification",
    "CLCRModel",
    "CLCRPreTrainedModel",
    "DependencyParser",
    "Explanation",
    "SSUConfig",
    "SSUForSequenceClassification",
    "SSUModel",
    "SSUPreTrainedModel",
    "explain",
    "load_metric",
    "retain_freed_memory",
]


def _load() -> None:
    """Import the public classes and register them with the Auto classes and the pipeline registry."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from .cpu_memory import retain_freed_memory
    from .data.collator import MMFusionDataCollator
    from .explanation import Explanation, explain
    from .metrics import load_metric
    from .models.configuration_clcr import CLCRConfig
    from .models.configuration_ssu import SSUConfig
    from .models.modeling_clcr import CLCRForSequenceClassification, CLCRModel, CLCRPreTrainedModel
    from .models.modeling_ssu import SSUForSequenceClassification, SSUModel, SSUPreTrainedModel
    from .pipeline import MultimodalSentimentPipeline, register_pipeline
    from .processing import (
        AcousticFeatureExtractor,
        DependencyParser,
        MMFusionProcessor,
        VisualFeatureExtractor,
    )

    for config, base, head in (
        (CLCRConfig, CLCRModel, CLCRForSequenceClassification),
        (SSUConfig, SSUModel, SSUForSequenceClassification),
    ):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModel.register(config, base, exist_ok=True)
        AutoModelForSequenceClassification.register(config, head, exist_ok=True)
    register_pipeline()
    globals().update(
        AcousticFeatureExtractor=AcousticFeatureExtractor, MMFusionDataCollator=MMFusionDataCollator,
        MMFusionProcessor=MMFusionProcessor, MultimodalSentimentPipeline=MultimodalSentimentPipeline,
        VisualFeatureExtractor=VisualFeatureExtractor, CLCRConfig=CLCRConfig,
        CLCRForSequenceClassification=CLCRForSequenceClassification, CLCRModel=CLCRModel,
        CLCRPreTrainedModel=CLCRPreTrainedModel, DependencyParser=DependencyParser, SSUConfig=SSUConfig,
        SSUForSequenceClassification=SSUForSequenceClassification, SSUModel=SSUModel,
        SSUPreTrainedModel=SSUPreTrainedModel, load_metric=load_metric, retain_freed_memory=retain_freed_memory,
        Explanation=Explanation, explain=explain,
    )


def _usage_only() -> bool:
    # `hf-mmfusion` / `hf-mmfusion --help` only print the command list: loading torch for it would cost
    # seconds. Anything that then touches the package's names loads it (see __getattr__).
    argv = _sys.argv
    return (
        bool(argv) and _os.path.basename(argv[0]) == "hf-mmfusion"
        and (len(argv) == 1 or argv[1] in ("-h", "--help", "help"))
    )


def __getattr__(name: str):
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not _usage_only():
    _load()
