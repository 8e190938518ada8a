"""Serving saved models: checkpoint checks and loading, record encoding, and the pipeline built on them."""
