"""Publish a trained checkpoint to the Hub in one commit: weights, config, the model code (so that
`trust_remote_code=True` works without this package), the processor and a model card with the test metrics.

    python examples/push_to_hub.py runs/clcr org/clcr-mosei --metrics_file runs/clcr/all_results.json \
        --dataset_id org/cmu-mosei --dataset_name CMU-MOSEI

The same from Python:

    from hf_mmfusion.inference.checkpoints import load_pretrained
    from hf_mmfusion.hub import build_model_card, push_to_hub

    model, processor = load_pretrained("runs/clcr")
    card = build_model_card(model, {"mae": 0.71, "acc2_has0": 0.82}, "CMU-MOSEI", dataset_id="org/cmu-mosei",
                            repo_id="org/clcr-mosei")
    push_to_hub(model, "org/clcr-mosei", processor=processor, card=card)
"""

import sys

from hf_mmfusion.commands import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
