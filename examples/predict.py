"""Score new inputs with a saved or Hub checkpoint.

    python examples/predict.py runs/clcr --text "what a great film" --audio clip.npy --visual face.npy
    python examples/predict.py org/clcr-mosei --inputs utterances.jsonl --output scores.csv

A `.wav` recording or a video works for a model whose processor computed its training frames itself
(trained on `convert videos` output); a model trained on precomputed frames takes `.npy` frames.

or, through the pipeline registered by `import hf_mmfusion`:

    from transformers import pipeline
    pipe = pipeline("multimodal-sentiment", model="runs/clcr")
    pipe({"text": "what a great film", "audio": "clip.npy", "visual": "face.npy"})
"""

import sys

from hf_mmfusion.commands import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
