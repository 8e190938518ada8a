#!/usr/bin/env python
"""Convert an MMSA pickle (CMU-MOSI / CMU-MOSEI / CH-SIMS, aligned or unaligned) into a canonical DatasetDict.

    python dataset_scripts/convert_mmsa.py MOSI/Processed/unaligned_50.pkl -o cmu-mosi [--file-format parquet] [--push-to-hub ORG/NAME]

Same as ``hf-mmfusion convert mmsa ...``; ``--help`` lists every option.
"""

import sys
from pathlib import Path

try:
    from hf_mmfusion.commands.convert import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_mmfusion.commands.convert import main

if __name__ == "__main__":
    sys.exit(main(["mmsa", *sys.argv[1:]], prog="dataset_scripts/convert_mmsa.py mmsa"))
