#!/usr/bin/env python
"""Convert one feature vector per segment and split (`{split}_{id,label,audio,vision}` arrays) into a canonical DatasetDict.

    python dataset_scripts/convert_npz.py mosi_utterance_features.npz --text-from mosi_text_labels.csv -o mosi-utterances [--file-format parquet] [--push-to-hub ORG/NAME]

Same as ``hf-mmfusion convert npz ...``; ``--help`` lists every option.
"""

import sys
from pathlib import Path

try:
    from hf_mmfusion.commands.convert import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_mmfusion.commands.convert import main

if __name__ == "__main__":
    sys.exit(main(["npz", *sys.argv[1:]], prog="dataset_scripts/convert_npz.py npz"))
