"""``python -m dualinpaint`` (and ``torchrun -m dualinpaint``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
