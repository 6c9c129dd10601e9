"""`rlhfkit annotators` and `rlhfkit serve`: tokens shown once, stored as hashes, never logged."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from apphelpers import fill

from rlhfkit.app.auth import TOKEN_RE
from rlhfkit.app.server import store_url_for
from rlhfkit.cli import main
from rlhfkit.feedback.store import FeedbackStore


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    store = FeedbackStore.in_dir(tmp_path)
    fill(store)
    store.close()
    return tmp_path


def _add(run_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["annotators", "add", *args, "--run", str(run_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_the_token_once_and_stores_only_its_hash(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _add(run_dir, capsys, "erin")
    assert code == 0 and "shown only this once" in err
    token = out.strip()
    assert TOKEN_RE.match(token)
    selector, secret = token.split(".")
    store = FeedbackStore.in_dir(run_dir)
    (stored,) = store.tokens("erin")
    assert stored.selector == selector and stored.role == "annotator"
    assert stored.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    store.close()
    raw = b"".join(p.read_bytes() for p in run_dir.glob("feedback.sqlite*"))
    assert secret.encode() not in raw and token.encode() not in raw

    # the same name again is refused; --rotate makes a new token and revokes the old one
    code, out, err = _add(run_dir, capsys, "erin")
    assert code == 2 and "already has a token" in err and out == ""
    code, out, _ = _add(run_dir, capsys, "erin", "--rotate")
    assert code == 0 and out.strip() != token
    assert main(["annotators", "list", "--run", str(run_dir)]) == 0
    listing = capsys.readouterr().out
    assert "erin\tannotator\trevoked" in listing and "erin\tannotator\tactive" in listing
    assert secret not in listing and out.strip().split(".")[1] not in listing


def test_admin_tokens_revoke_and_bad_names(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _add(run_dir, capsys, "root", "--admin")
    assert code == 0
    store = FeedbackStore.in_dir(run_dir)
    assert store.tokens("root")[0].role == "admin"
    assert main(["annotators", "revoke", "root", "--run", str(run_dir)]) == 0
    assert "revoked 1 token" in capsys.readouterr().err
    assert store.tokens("root")[0].revoked_at is not None
    code, _, err = _add(run_dir, capsys, "../etc")
    assert code == 2 and "annotator name" in err
    store.close()


def test_store_url_for(tmp_path: Path, run_dir: Path) -> None:
    assert store_url_for(run_dir) == f"sqlite:///{run_dir / 'feedback.sqlite'}"
    assert store_url_for(tmp_path / "x", "postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        store_url_for(tmp_path / "typo")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.toml").write_text('[feedback]\nstore_url = "postgres://a@b/c"\n', encoding="utf-8")
    assert store_url_for(tmp_path / "cfg") == "postgresql+psycopg://a@b/c"


def test_annotators_needs_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotators", "add", "x", "--run", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_served_logs_hold_no_token(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real `rlhfkit serve` process, access log on: every request is logged, no token is."""
    tokens = [_add(run_dir, capsys, name, *flags)[1].strip() for name, flags in [("fay", ()), ("gus", ("--admin",))]]
    log_path = run_dir / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlhfkit", "serve", str(run_dir), "--port", "0", "--no-prerender"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 60
        port = None
        while port is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        assert port is not None, log_path.read_text(errors="replace")
        fay, gus = tokens
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            assert http.post("/api/session", json={"token": fay}).status_code == 200
            assert http.post("/api/session", json={"token": fay[:-1] + "#"}).status_code == 401
            bearer = {"Authorization": f"Bearer {fay}"}
            assert http.post("/api/answers", json={"query_id": "q0", "answer": "A"}, headers=bearer).status_code == 201
            assert http.post("/api/answers", json={"query_id": "q0", "oops": fay}, headers=bearer).status_code == 422
            assert http.get("/api/admin/progress", headers=bearer).status_code == 403
            assert http.get("/api/me", headers={"Authorization": "Bearer " + fay + "0"}).status_code == 401
            admin = {"Authorization": f"Bearer {gus}"}
            assert http.post("/api/admin/loop", json={"paused": True}, headers=admin).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert '"POST /api/answers HTTP/1.1" 201' in text and '"GET /api/admin/progress HTTP/1.1" 403' in text
    for token in tokens:
        secret = token.split(".")[1]
        assert secret not in text and secret[:16] not in text


def test_serve_on_a_read_only_folder_exits_with_one_line(run_dir: Path) -> None:
    """Not a traceback: one line naming the store and why, exit code 2 (as for every CLI error)."""
    import shutil

    prefix: list[str] = []
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root this needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, "--bounding-set", caps, "--inh-caps", caps]
    run_dir.chmod(0o555)
    (run_dir / "feedback.sqlite").chmod(0o444)
    try:
        r = subprocess.run(
            [*prefix, sys.executable, "-m", "rlhfkit", "serve", str(run_dir), "--port", "0", "--no-prerender"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        run_dir.chmod(0o755)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("rlhfkit: error: cannot open the feedback store sqlite:///")
    assert r.stderr.rstrip().endswith("the database is read-only")


def test_serve_without_annotators_says_how_to_add_one(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlhfkit.app.server

    served: list[object] = []
    monkeypatch.setattr(rlhfkit.app.server, "serve", lambda *args, **kwargs: served.append(args))
    assert main(["serve", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "no annotators yet" in err and f"rlhfkit annotators add NAME --run {run_dir}" in err
    assert len(served) == 1  # it serves anyway: people added now can sign in at once
    _add(run_dir, capsys, "hana")
    assert main(["serve", str(run_dir)]) == 0
    assert "no annotators" not in capsys.readouterr().err


def test_annotators_list_of_an_empty_run_says_it_is_empty(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotators", "list", "--run", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert (
        out == "" and f"no annotators in {run_dir}; add one with `rlhfkit annotators add NAME --run {run_dir}`" in err
    )
    _add(run_dir, capsys, "ivo")
    assert main(["annotators", "list", "--run", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ivo\tannotator\tactive") and "no annotators" not in err
