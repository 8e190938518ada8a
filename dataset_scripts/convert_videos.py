#!/usr/bin/env python
"""Convert a labelled folder of video clips into a canonical DatasetDict with real features.

    python dataset_scripts/convert_videos.py CLIPS_DIR --labels labels.csv --audio-features egemaps \
        --visual-features facebook/dinov2-small --face-crop --asr-model openai/whisper-small -o my-clips

Same as ``hf-mmfusion convert videos ...``; ``--help`` lists every option.
"""

import sys
from pathlib import Path

try:
    from hf_mmfusion.commands.convert import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_mmfusion.commands.convert import main

if __name__ == "__main__":
    sys.exit(main(["videos", *sys.argv[1:]], prog="dataset_scripts/convert_videos.py videos"))
