"""Datasets: schema, converters, collation, cached preprocessing and synthetic data with a known signal."""

from .collator import MMFusionDataCollator
from .convert import load_npz_dataset
from .preprocess import preprocess_dataset
from .schema import canonical_features, load_converted, write_dataset_dict
from .synthetic import build_synthetic_tokenizer, generate_synthetic_examples, make_synthetic_dataset

__all__ = [
    "MMFusionDataCollator",
    "build_synthetic_tokenizer",
    "canonical_features",
    "generate_synthetic_examples",
    "load_converted",
    "load_npz_dataset",
    "make_synthetic_dataset",
    "preprocess_dataset",
    "write_dataset_dict",
]
