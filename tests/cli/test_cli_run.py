"""`rlhfkit run`: a `--resume` of something that is not a run folder says what it is, and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.cli import main


def test_resume_of_something_that_is_not_a_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    config = tmp_path / "pendulum.toml"
    config.write_text('task = "pendulum"\n')
    for target, says in [
        (tmp_path / "empty", f"{tmp_path / 'empty'} is not a run folder (it has no config.toml"),
        (config, f"{config} is a file, not a run folder; to start a run from this config: rlhfkit run {config}"),
        (tmp_path / "missing", f"{tmp_path / 'missing'}: no such run folder"),
    ]:
        assert main(["run", "--resume", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rlhfkit: error: {says}") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "pendulum.toml"]  # nothing was created
