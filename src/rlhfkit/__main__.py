"""``python -m rlhfkit`` is the ``rlhfkit`` command."""

import sys

from rlhfkit.cli import main

sys.exit(main())
