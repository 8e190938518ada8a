"""Preprocessing: turning raw text, audio and video into model inputs."""

from .dependency_parser import DependencyParser, chain_heads, heads_from_offsets

__all__ = ["DependencyParser", "chain_heads", "heads_from_offsets"]
