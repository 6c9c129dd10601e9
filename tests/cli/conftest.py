"""The command line's tests build run folders with the web app's test helpers (``tests/app/apphelpers.py``).

pytest puts a test's own folder on ``sys.path`` (the tests have no packages), so the
helpers of ``tests/app`` are importable from here only once that folder is there too.
"""

from __future__ import annotations

import sys
from pathlib import Path

_APP_TESTS = str(Path(__file__).resolve().parent.parent / "app")
if _APP_TESTS not in sys.path:
    sys.path.insert(0, _APP_TESTS)
