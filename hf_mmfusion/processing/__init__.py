"""Preprocessing: frame feature extractors, the dependency parser wrapper and the multimodal processor.

Importing this package registers the feature extractors with ``AutoFeatureExtractor`` and the processor
with ``AutoProcessor``, so ``from_pretrained`` resolves the class names saved in their configs.
"""

from transformers import AutoFeatureExtractor, AutoProcessor

from .dependency_parser import DependencyParser, chain_heads, heads_from_offsets, installed_spacy_pipeline
from .feature_extraction_mmfusion import AcousticFeatureExtractor, VisualFeatureExtractor
from .processing_mmfusion import MMFusionProcessor

# transformers keys these registries by config class; the extractors and the processor serve several
# model configs (and none), so they are registered under their own names. Lookups by the class name
# saved in `preprocessor_config.json` / `processor_config.json` go through these entries.
AutoFeatureExtractor.register("mmfusion_acoustic", AcousticFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register("mmfusion_visual", VisualFeatureExtractor, exist_ok=True)
AutoProcessor.register("mmfusion", MMFusionProcessor, exist_ok=True)
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
