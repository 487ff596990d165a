"""``python -m flotilla.simulator``: the ``flotilla simulate`` command."""

import sys

from .cli import main

sys.exit(main())
