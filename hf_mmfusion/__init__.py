"""hf_mmfusion: CLCR and SSU multimodal-fusion models for the Hugging Face ecosystem.

Importing the package registers every model, config, processor and feature extractor with the
transformers Auto classes.
"""

__version__ = "0.1.0"
