"""``transformers.pipeline("multimodal-sentiment", model=...)`` for CLCR and SSU checkpoints.

Importing ``hf_mmfusion`` registers the task. Each input is a dict with any of ``text`` (string), ``audio``
(``[frames, Da]`` array, ``.npy`` path or ``.wav`` path) and ``visual`` (``[frames, Dv]`` array or
``.npy`` path) or ``video`` (a video file: the source of every stream not given otherwise); a list of such
dicts gives a list of results.

```python
from transformers import pipeline

pipe = pipeline("multimodal-sentiment", model="org/clcr-mosei")
pipe({"text": "what a great film", "audio": audio_frames, "visual": visual_frames})
# {'score': 1.93, 'polarity': 'positive'}
```
"""

from __future__ import annotations

import os

from transformers import Pipeline

from ..utils.sources import is_hub_id
from .checkpoints import check_checkpoint_weights, model_modalities
from .records import check_record, encode_records, postprocess


class MultimodalSentimentPipeline(Pipeline):
    """Processor -> fusion model -> score (regression) or label with probabilities (classification)."""

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        source = getattr(self.model, "name_or_path", "")
        revision = getattr(self.model.config, "_commit_hash", None)
        # A model loaded from one of our checkpoints must have found all its weights there (and nothing else).
        if source and (os.path.isdir(source) or is_hub_id(source)) and _saved_model_type(source, revision) == (
            self.model.config.model_type
        ):
            check_checkpoint_weights(self.model, source, revision)

    def _sanitize_parameters(self, max_length=None, top_k=None, **kwargs):
        preprocess = {"max_length": max_length} if max_length is not None else {}
        post = {"top_k": top_k} if top_k is not None else {}
        return preprocess, {}, post

    def preprocess(self, inputs, max_length: int = 128):
        if isinstance(inputs, str):
            inputs = {"text": inputs}
        if not isinstance(inputs, dict):
            raise ValueError(
                "multimodal-sentiment inputs must be a dict with any of 'text', 'audio', 'visual', 'video' "
                f"(or a string of text), got {type(inputs).__name__}"
            )
        modalities = list(model_modalities(self.model.config))
        check_record(inputs, modalities, "multimodal-sentiment input")
        if hasattr(self.processor, "check_model_widths"):
            self.processor.check_model_widths(self.model.config)
        return dict(encode_records(self.processor, [inputs], modalities, max_length))

    def __call__(self, inputs, **kwargs):
        # Pipeline.__call__ indexes the first element of a list; an empty batch has no results.
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            return []
        return super().__call__(inputs, **kwargs)

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs, top_k: int | None = None):
        result = postprocess(self.model, model_outputs["logits"].float().cpu())[0]
        if top_k is not None and "probabilities" in result:
            labels = self.model.config.id2label
            ranked = sorted(enumerate(result["probabilities"]), key=lambda t: -t[1])[:top_k]
            return [{"label": labels.get(i, str(i)), "score": p} for i, p in ranked]
        return result


def _saved_model_type(source: str, revision: str | None) -> str | None:
    import json

    from transformers.utils import cached_file

    path = cached_file(source, "config.json", revision=revision, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    if not path:
        return None
    with open(path) as handle:
        return json.load(handle).get("model_type")
