"""``transformers.pipeline("multimodal-sentiment", model=...)`` for CLCR and SSU checkpoints.

Importing ``hf_mmfusion`` registers the task. Each input is a dict with any of ``text`` (string), ``audio``
(``[frames, Da]`` array, ``.npy`` path or ``.wav`` path) and ``visual`` (``[frames, Dv]`` array or
``.npy`` path) or ``video`` (a video file: the source of every stream not given otherwise); a list of such
dicts gives a list of results.

```python
import hf_mmfusion
from transformers import pipeline

pipe = pipeline("multimodal-sentiment", model="org/clcr-mosei")
pipe({"text": "what a great film", "audio": audio_frames, "visual": visual_frames})
# {'score': 1.93, 'polarity': 'positive'}
```
"""

from __future__ import annotations

from transformers import AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .predict import encode_records, postprocess

TASK = "multimodal-sentiment"


class MultimodalSentimentPipeline(Pipeline):
    """Processor -> fusion model -> score (regression) or label with probabilities (classification)."""

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

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
        if hasattr(self.processor, "check_model_widths"):
            self.processor.check_model_widths(self.model.config)
        return dict(encode_records(self.processor, [inputs], list(self.model.config.modalities), max_length))

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs, top_k: int | None = None):
        result = postprocess(self.model, model_outputs["logits"].float().cpu())[0]
        if top_k is not None and "probabilities" in result:
            labels = self.model.config.id2label
            ranked = sorted(enumerate(result["probabilities"]), key=lambda t: -t[1])[:top_k]
            return [{"label": labels.get(i, str(i)), "score": p} for i, p in ranked]
        return result


def register_pipeline() -> None:
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=MultimodalSentimentPipeline, pt_model=AutoModelForSequenceClassification, type="multimodal"
    )
