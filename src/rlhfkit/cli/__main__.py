"""``python -m rlhfkit.cli`` is the ``rlhfkit`` command."""

import sys

from rlhfkit.cli import main

sys.exit(main())
