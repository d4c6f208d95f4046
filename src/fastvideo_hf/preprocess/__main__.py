"""``python -m fastvideo_hf.preprocess`` (also under ``torchrun`` / ``accelerate launch``): the CLI of ``cli``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
