#!/usr/bin/env python
"""Convert CMU-MultimodalSDK computational sequences (.csd) with the standard folds into a canonical DatasetDict.

    python dataset_scripts/convert_sdk.py CMU_MOSI_Opinion_Labels.csd --folds cmu_mosi_std_folds.txt --audio-csd CMU_MOSI_COVAREP.csd -o cmu-mosi [--file-format parquet] [--push-to-hub ORG/NAME]

Same as ``hf-mmfusion convert sdk ...``; ``--help`` lists every option.
"""

import sys
from pathlib import Path

try:
    from hf_mmfusion.commands.convert import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_mmfusion.commands.convert import main

if __name__ == "__main__":
    sys.exit(main(["sdk", *sys.argv[1:]], prog="dataset_scripts/convert_sdk.py sdk"))
