"""The preference record checks what it holds and freezes its messages."""

from __future__ import annotations

import pytest
from formats_helpers import (
    assistant,
    user,
)

from rlhfkit.feedback.formats import (
    PreferenceRecord,
)


def test_record_checks() -> None:
    with pytest.raises(ValueError, match="same completion"):
        PreferenceRecord(prompt="p", chosen="a", rejected="a")
    with pytest.raises(ValueError, match="empty"):
        PreferenceRecord(prompt="p", chosen="", rejected="a")
    with pytest.raises(ValueError, match="share"):
        PreferenceRecord(prompt="p", chosen="a", rejected="b", mu=(0.3, 0.7))
    with pytest.raises(ValueError, match="all be plain text"):
        PreferenceRecord(prompt="p", chosen=(assistant("a"),), rejected=(assistant("b"),))
    record = PreferenceRecord(prompt=[user("p")], chosen=[assistant("a")], rejected=[assistant("b")])  # type: ignore[arg-type]
    assert isinstance(record.prompt, tuple) and record.mu == (1.0, 0.0)
    with pytest.raises(TypeError):
        record.prompt[0]["content"] = "changed"  # type: ignore[index]
