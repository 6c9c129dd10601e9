"""The renderer `rlhfkit export` hands the exports: the web app's videos, the run's env where a segment has none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from apphelpers import pendulum_segment

from rlhfkit.app import export_media
from rlhfkit.app.export_media import run_env_id, segment_renderer
from rlhfkit.feedback.formats import InteropError
from rlhfkit.types import Generation, Segment

WEBM_MAGIC = b"\x1a\x45\xdf\xa3"


def test_run_env_id_reads_the_runs_task(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('task = "cartpole"\n')
    assert run_env_id(tmp_path) == "CartPole-v1"
    (tmp_path / "config.toml").write_text('task = "text:sentiment"\n')
    assert run_env_id(tmp_path) is None
    assert run_env_id(tmp_path / "no-such-run") is None


def test_a_segment_without_env_id_is_drawn_in_the_runs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text('task = "pendulum"\n')
    bare = dataclasses.replace(pendulum_segment(0), info={})
    drawn: list[Segment] = []

    def get(self: object, generation_id: str, segment: Segment, fmt: str) -> Path:
        drawn.append(segment)
        path = tmp_path / f"{generation_id}.{fmt}"
        path.write_bytes(WEBM_MAGIC)
        return path

    monkeypatch.setattr(export_media.MediaCache, "get", get)
    assert segment_renderer(tmp_path)(Generation("g0", 1, "r", bare)) == WEBM_MAGIC
    assert drawn[0].info["env_id"] == "Pendulum-v1"


def test_renders_into_the_runs_media_cache_and_names_what_fails(tmp_path: Path) -> None:
    render = segment_renderer(tmp_path)
    video = render(Generation("g0", 1, "r", pendulum_segment(0)))
    assert video.startswith(WEBM_MAGIC) and (tmp_path / "media" / "g0.webm").read_bytes() == video
    unknown = dataclasses.replace(pendulum_segment(1), info={"env_id": "NoSuchEnv-v0"})
    with pytest.raises(InteropError, match=r"generation g1: cannot render its video: .*NoSuchEnv-v0"):
        render(Generation("g1", 1, "r", unknown))
