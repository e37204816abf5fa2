"""``python -m remsvc_core.cli``: the same as the ``remsvc`` console script."""

from __future__ import annotations

import sys

from remsvc_core.cli import main

sys.exit(main())
