"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers every model, config, processor and feature extractor with the
transformers Auto classes.
"""

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
from .processing import AcousticFeatureExtractor, DependencyParser, MMFusionProcessor, VisualFeatureExtractor

__version__ = "0.1.0"

for _config, _base, _head in (
    (CLCRConfig, CLCRModel, CLCRForSequenceClassification),
    (SSUConfig, SSUModel, SSUForSequenceClassification),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _base, exist_ok=True)
    AutoModelForSequenceClassification.register(_config, _head, exist_ok=True)
register_pipeline()

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
