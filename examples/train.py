"""Train CLCR or SSU with transformers' Trainer.

Every `TrainingArguments` option is a flag, next to the model and data options of
`hf_mmfusion.commands.train` (`python examples/train.py --help`). The same script runs on one process,
under `torchrun --nproc_per_node N` and under `accelerate launch`:

    python examples/train.py --model_type clcr --dataset synthetic --output_dir runs/clcr
    torchrun --nproc_per_node 2 examples/train.py --model_type ssu --dataset ./cmu-mosi --text_model bert-base-uncased \
        --text_learning_rate 5e-5 --learning_rate 1e-3 --output_dir runs/ssu-mosi
    python examples/train.py --model_type clcr --dataset org/cmu-mosei --text_model bert-base-uncased --lora \
        --output_dir runs/clcr-lora

A single JSON or YAML file with the same keys works too: `python examples/train.py config.json`.
"""

import sys

from hf_mmfusion.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
