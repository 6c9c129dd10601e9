"""The one way from a preference file (or rows in memory) to records: the format named or detected, then its reader.

:func:`read_preferences` is what the commands call: ``--format auto`` detects
the format from the file's first row (:func:`detect_format`); bad rows stop it
with a :class:`~rlhfkit.feedback.formats.common.DataFormatError` naming file,
line and field, or, with ``skip_bad_rows``, are counted in the report.
:func:`preference_file` checks a file given on the command line before any of
that, naming the option. :func:`read_rows` reads rows already in memory (a
``datasets.Dataset``, a list of dicts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from rlhfkit.feedback.formats.common import PREFERENCE_FORMATS, ImportReport, PreferenceFormat, PreferenceRecord
from rlhfkit.feedback.formats.hh import parse_hh
from rlhfkit.feedback.formats.rows import RowContext, RowParser, collect, first_row, read_file
from rlhfkit.feedback.formats.scored import ScoredMode, scored_parser
from rlhfkit.feedback.formats.trl import parse_trl, parse_trl_conversational

ReadFormat = Literal["auto", "trl", "trl_conversational", "hh", "scored"]
"""A preference format, or ``"auto"``: told from the file's first row."""

_PARSERS: dict[str, RowParser] = {
    "trl": parse_trl,
    "trl_conversational": parse_trl_conversational,
    "hh": parse_hh,
}


def row_parser(
    format: str,
    *,
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
) -> RowParser:
    """The parser of one row of ``format``; ``mode`` … ``score_key`` apply to ``"scored"`` only."""
    if format == "scored":
        return scored_parser(mode, temperature, keep_ties, prompt_key, score_key)
    if format not in _PARSERS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(map(repr, PREFERENCE_FORMATS))}")
    return _PARSERS[format]


def preference_file(path: str, option: str) -> str:
    """``path`` when it names a readable file; otherwise one error naming the command-line ``option`` and the path."""
    p = Path(path)
    if p.is_dir():
        raise FileNotFoundError(f"{option} {path}: a folder; give a preference file (JSON Lines)")
    try:
        p.open("rb").close()
    except FileNotFoundError:
        raise FileNotFoundError(f"{option} {path}: no such file") from None
    except OSError as e:
        raise FileNotFoundError(f"{option} {path}: cannot be read ({e.strerror})") from None
    return path


def detect_format(path: str | Path) -> PreferenceFormat:
    """The format of a preference file, from the keys and types of its first row.

    ``"completions"`` means scored; a list under ``"chosen"`` conversational; a
    ``"chosen"`` transcript starting with ``Human:`` and no ``"prompt"`` HH;
    anything else TRL's standard shape (whose reader then names what is missing).
    """
    _, row = first_row(path)
    if "completions" in row:
        return "scored"
    if isinstance(row.get("chosen"), list):
        return "trl_conversational"
    if "prompt" not in row and str(row.get("chosen", "")).lstrip("\n").startswith("Human:"):
        return "hh"
    return "trl"


def read_preferences(
    path: str | Path,
    format: ReadFormat = "auto",
    skip_bad_rows: bool = False,
    *,
    annotator_id: str = "dataset",
    source: str | None = None,
) -> ImportReport[PreferenceRecord]:
    """Every record of a preference file in ``format`` (detected when ``"auto"``).

    Without ``skip_bad_rows`` the first bad row raises
    :class:`~rlhfkit.feedback.formats.common.DataFormatError`; with it, bad rows
    are counted in the report. ``annotator_id`` and ``source`` are as for
    :func:`~rlhfkit.feedback.formats.trl.read_trl`; scored files are read with
    the default options of :func:`~rlhfkit.feedback.formats.scored.read_scored`
    (every pair, ties kept).
    """
    if format != "auto" and format not in PREFERENCE_FORMATS:
        raise ValueError(f"unknown format {format!r}; choose auto, {', '.join(PREFERENCE_FORMATS)}")
    fmt = detect_format(path) if format == "auto" else format
    return read_file(path, row_parser(fmt), skip_bad_rows, annotator_id, source)


def read_rows(
    rows: Iterable[Mapping[str, Any]],
    format: PreferenceFormat,
    *,
    source: str,
    skip_bad_rows: bool = False,
    annotator_id: str = "dataset",
    first_line: int = 1,
    mode: ScoredMode = "all_pairs",
    temperature: float | None = None,
    keep_ties: bool = True,
    prompt_key: str = "prompt",
    score_key: str = "score",
) -> ImportReport[PreferenceRecord]:
    """Read rows already in memory, e.g. a ``datasets.Dataset`` or a list of dicts.

    ``source`` names the data (say ``"Anthropic/hh-rlhf:train"``): it appears
    in error messages in place of a file name and derives the store ids. Row
    ``i`` (from 0) gets ``source_line = first_line + i``, so by default the
    same numbers as the lines of the data set written as JSON Lines.
    A ``None`` prompt reads as a missing one.

    Beware that ``datasets`` fills a field missing from some rows with
    ``None``, and ``"mu": None`` reads as "incomparable": a file whose rows
    carry ``"mu"`` only sometimes (as ``export_store`` writes them) is read
    exactly with :func:`read_preferences`, not through ``datasets``.
    ``mode`` … ``score_key`` apply to ``format="scored"`` only (see
    :func:`~rlhfkit.feedback.formats.scored.read_scored`); the rest are as for
    :func:`~rlhfkit.feedback.formats.trl.read_trl`.

    Example::

        ds = datasets.load_dataset("Anthropic/hh-rlhf", split="train")
        records = read_rows(ds, "hh", source="Anthropic/hh-rlhf:train").records
    """
    parse = row_parser(
        format, mode=mode, temperature=temperature, keep_ties=keep_ties, prompt_key=prompt_key, score_key=score_key
    )
    ctx = RowContext(source=source, annotator_id=annotator_id)
    return collect(source, enumerate(rows, start=first_line), parse, ctx, skip_bad_rows)
