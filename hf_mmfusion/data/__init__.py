"""Datasets: schema, collation and synthetic data with a known cross-modal signal."""

from .synthetic import build_synthetic_tokenizer, generate_synthetic_examples, make_synthetic_dataset

__all__ = ["build_synthetic_tokenizer", "generate_synthetic_examples", "make_synthetic_dataset"]
