"""``python -m hf_mmfusion.commands <command> ...``: the same as ``hf-mmfusion <command> ...``."""

import sys

from . import main

sys.exit(main())
