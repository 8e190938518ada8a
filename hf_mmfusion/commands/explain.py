"""``hf-mmfusion explain``: the models' analyses as explain.json, figures and index.html."""

from ..explanation import main  # noqa: F401
