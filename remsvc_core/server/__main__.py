"""``python -m remsvc_core.server`` is ``remsvc-server``."""

from remsvc_core.server.cli import main

raise SystemExit(main())
