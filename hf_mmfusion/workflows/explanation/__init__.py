"""``explain``: the models' analyses and the occlusion test as ``explain.json``, figures and ``index.html``."""

from .core import Explanation, explain

__all__ = ["Explanation", "explain"]
