"""The errors a person meets: the command line finds each listed class by module and name."""

from __future__ import annotations


def test_every_person_facing_error_is_where_the_cli_looks_for_it() -> None:
    """The command line finds these classes by module and name: a rename must not turn them into tracebacks."""
    import importlib

    from rlhfkit.errors import PERSON_FACING, is_person_facing

    for module, names in PERSON_FACING.items():
        for name in names:
            cls = getattr(importlib.import_module(module), name)
            assert issubclass(cls, Exception) and is_person_facing(
                cls("x") if name != "DataFormatError" else cls("f", 1, "a", "b")
            )
    assert not is_person_facing(KeyError("a bug"))
