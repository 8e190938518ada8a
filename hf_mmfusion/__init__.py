"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers every model, config, processor and feature extractor with the
transformers Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .models.configuration_ssu import SSUConfig
from .models.modeling_ssu import SSUForSequenceClassification, SSUModel, SSUPreTrainedModel
from .processing.dependency_parser import DependencyParser

__version__ = "0.1.0"

AutoConfig.register("ssu", SSUConfig, exist_ok=True)
AutoModel.register(SSUConfig, SSUModel, exist_ok=True)
AutoModelForSequenceClassification.register(SSUConfig, SSUForSequenceClassification, exist_ok=True)

__all__ = [
    "DependencyParser",
    "SSUConfig",
    "SSUForSequenceClassification",
    "SSUModel",
    "SSUPreTrainedModel",
]
