"""Preprocessing: frame feature extractors, the dependency parser wrapper and the multimodal processor.

``import hf_mmfusion`` registers the feature extractors with ``AutoFeatureExtractor`` and the processor
with ``AutoProcessor`` (see ``hf_mmfusion.registration``), so ``from_pretrained`` resolves the class
names saved in their configs.
"""

from .dependency_parser import DependencyParser, chain_heads, heads_from_offsets, installed_spacy_pipeline
from .feature_extraction_acoustic import AcousticFeatureExtractor
from .feature_extraction_visual import VisualFeatureExtractor
from .processing_mmfusion import MMFusionProcessor

# Saved processors carry their code and `auto_map`, for loading with trust_remote_code=True elsewhere.
MMFusionProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AcousticFeatureExtractor",
    "DependencyParser",
    "MMFusionProcessor",
    "VisualFeatureExtractor",
    "chain_heads",
    "heads_from_offsets",
    "installed_spacy_pipeline",
]
