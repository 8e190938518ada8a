#!/usr/bin/env python
"""Convert a CSV / JSON manifest of your own data (ids, text, labels, splits, .npy / .wav paths) into a canonical DatasetDict.

    python dataset_scripts/convert_manifest.py manifest.csv --audio-column audio_path -o my-data [--file-format parquet] [--push-to-hub ORG/NAME]

Same as ``hf-mmfusion convert manifest ...``; ``--help`` lists every option.
"""

import sys
from pathlib import Path

try:
    from hf_mmfusion.commands.convert import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_mmfusion.commands.convert import main

if __name__ == "__main__":
    sys.exit(main(["manifest", *sys.argv[1:]], prog="dataset_scripts/convert_manifest.py manifest"))
