"""Reading preference files for ``rlhfkit fit-reward`` and ``rlhfkit dpo``, and the commands' notes about them.

What is left here are the file readers (format detection and dispatch) and the
notes the commands print about skipped rows and unmeasured accuracy; the fit
from a file is ``reward/fit_files.py``, the transformer reward model
``reward/transformer.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rlhfkit.data.preferences import (
    ImportReport,
    first_row,
    read_hh,
    read_scored,
    read_trl,
    read_trl_conversational,
)

Format = Literal["auto", "trl", "trl_conversational", "hh", "scored"]


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


def skipped_note(n: int, option: str, path: str | None) -> str | None:
    """What ``--skip-bad-rows`` left out of the file given as ``option``, or None when nothing."""
    return f"skipped {n} bad row{'s' if n != 1 else ''} of {option} {path} (--skip-bad-rows)" if n else None


def not_measured(eval_data: str | None, skipped_eval: int, n_eval: int, eval_frac: float | None) -> str:
    """Why a held-out accuracy is NaN and what to do: the warning the commands print in its place.

    ``eval_frac`` is None for a command that holds out nothing without ``--eval-data``.
    """
    if n_eval > 0:
        return f"the {n_eval} held-out pairs are all ties (mu = 0.5, 0.5)"
    if eval_data is not None:
        bad = f" (its {skipped_eval} bad rows were skipped)" if skipped_eval else ""
        return f"--eval-data {eval_data} holds no usable pairs{bad}"
    if eval_frac is None:
        return "no held-out data; give --eval-data FILE"
    return f"--eval-frac {eval_frac:g} held out none of the prompts; give --eval-data FILE or a larger --eval-frac"


def detect_format(path: str | Path) -> str:
    """The format of a preference file, from the keys and types of its first row."""
    _, row = first_row(path)
    if "completions" in row:
        return "scored"
    if isinstance(row.get("chosen"), list):
        return "trl_conversational"
    if "prompt" not in row and str(row.get("chosen", "")).lstrip("\n").startswith("Human:"):
        return "hh"
    return "trl"


def read_preferences(path: str | Path, format: Format = "auto", skip_bad_rows: bool = False) -> ImportReport:
    """Every record of a preference file; with ``skip_bad_rows`` bad rows are counted, not fatal."""
    fmt = detect_format(path) if format == "auto" else format
    reader = {"trl": read_trl, "trl_conversational": read_trl_conversational, "hh": read_hh, "scored": read_scored}
    if fmt not in reader:
        raise ValueError(f"unknown format {fmt!r}; choose auto, {', '.join(reader)}")
    result = reader[fmt](path, skip_bad_rows=True) if skip_bad_rows else reader[fmt](path)  # type: ignore[operator]
    if isinstance(result, ImportReport):
        return result
    return ImportReport(records=list(result), skipped=0, errors=[])
