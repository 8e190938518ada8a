"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers every model, config, processor and feature extractor with the
transformers Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .models.configuration_clcr import CLCRConfig
from .models.modeling_clcr import CLCRForSequenceClassification, CLCRModel, CLCRPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register("clcr", CLCRConfig, exist_ok=True)
AutoModel.register(CLCRConfig, CLCRModel, exist_ok=True)
AutoModelForSequenceClassification.register(CLCRConfig, CLCRForSequenceClassification, exist_ok=True)

__all__ = ["CLCRConfig", "CLCRForSequenceClassification", "CLCRModel", "CLCRPreTrainedModel"]
