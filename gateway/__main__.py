"""``python -m gateway``: the ``lantian`` command (gateway/cli.py)."""

import sys

from gateway.cli import main

sys.exit(main())
