"""``python -m mgpo_env.remote``: the same as ``mgpo serve``."""

import sys

from .server import main

sys.exit(main())
