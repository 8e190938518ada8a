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
