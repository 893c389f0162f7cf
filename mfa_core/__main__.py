"""``python -m mfa_core``: the operator's command line (see mfa_core.cli)."""

import sys

from .cli import main

sys.exit(main())
