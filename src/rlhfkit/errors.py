"""Which errors a person meets, told apart from bugs without importing anything heavy.

``rlhfkit`` prints a person-facing error as one line, ``rlhfkit: error: MESSAGE``, with
exit status 2; anything else is a bug and keeps its traceback. Most of those error
classes live in the modules that raise them, and importing those modules pulls in
torch, transformers or SQLAlchemy (seconds). So :data:`PERSON_FACING` names them by
module, and :func:`is_person_facing` looks a class up only in modules already imported:
an error can only have been raised once its module was loaded. ``rlhfkit --help`` and
mistakes in the arguments thus answer at once.

:class:`ConfigError` lives here because the command line raises it itself, before it
imports anything (``rlhfkit.config`` re-exports it).
"""

from __future__ import annotations

import sys


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the field."""


PERSON_FACING: dict[str, tuple[str, ...]] = {
    "rlhfkit.tasks": ("UnknownTaskError",),
    "rlhfkit.models.control": ("UnsupportedSpaceError",),
    "rlhfkit.models.text_builders": ("ModelFolderError",),
    "rlhfkit.feedback.teacher": ("RewardValueError",),
    "rlhfkit.feedback.store": ("StoreError",),
    "rlhfkit.feedback.formats.common": ("DataFormatError", "InteropError"),
    "rlhfkit.reward.fit": ("NoUsableFeedbackError",),
    "rlhfkit.report": ("ReportError",),
}
"""Module -> names of the error classes it defines that a person can meet (bad input, a missing file)."""

_ALWAYS: tuple[type[BaseException], ...] = (ConfigError, FileExistsError, FileNotFoundError, FloatingPointError)


def is_person_facing(error: BaseException) -> bool:
    """Whether ``error`` is one of the errors ``rlhfkit`` reports in one line (see the module docstring)."""
    if isinstance(error, _ALWAYS):
        return True
    for module, names in PERSON_FACING.items():
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(error, tuple(getattr(loaded, name) for name in names)):
            return True
    return False
