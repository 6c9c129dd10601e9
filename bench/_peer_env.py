"""Create or reuse a peer virtual environment under ``bench/.venv-<name>``.

Benchmarks that compare against another library (a "peer") install it into its
own venv, never into the project's ``.venv``, so the peer's dependencies cannot
change ours. ``ensure_peer_venv`` is idempotent: a venv whose stamp file records
the same requirements is reused as is; otherwise it is (re)created and the
requirements installed, in order.

Requirements are installed one step at a time, in the order given, and every
earlier requirement stays pinned in each later step: put ``torch==X`` first so
that no later package can pull a different (e.g. multi-GB CUDA) torch build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
_STAMP = "rlhfkit-peer-requirements.json"


def peer_venv_dir(name: str) -> Path:
    return BENCH / f".venv-{name}"


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_peer_venv(name: str, requirements: Sequence[str]) -> Path:
    """Return the python of ``bench/.venv-<name>`` with ``requirements`` installed.

    Reuses the venv when its stamp matches ``requirements`` exactly; otherwise
    creates it from scratch and runs ``pip install`` once per requirement, with
    all earlier requirements repeated on the command line so they stay pinned.
    Prints what it does (to stderr) so a slow first run is explained.
    """
    reqs = list(requirements)
    env_dir = peer_venv_dir(name)
    py = _python(env_dir)
    stamp = env_dir / _STAMP
    if py.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == reqs:
                print(f"[peer-env] reusing {env_dir} ({' '.join(reqs)})", file=sys.stderr, flush=True)
                return py
        except (OSError, json.JSONDecodeError):
            pass
    if env_dir.exists():
        print(f"[peer-env] requirements changed or venv incomplete: recreating {env_dir}", file=sys.stderr, flush=True)
        shutil.rmtree(env_dir)
    print(f"[peer-env] creating {env_dir} (first run installs packages; may take a few minutes)", file=sys.stderr)
    # Based on the interpreter running us (the project's venv python resolves to its base).
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    for i in range(len(reqs)):
        step = reqs[: i + 1]
        print(f"[peer-env] pip install {' '.join(step)}", file=sys.stderr, flush=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *step],
            check=True,
            env=env,
        )
    stamp.write_text(json.dumps(reqs))
    print(f"[peer-env] ready: {py}", file=sys.stderr, flush=True)
    return py


def quiet_peer_child(threads: int) -> None:
    """In a peer's child process: ``threads`` torch threads and no progress bars, warnings or info logs.

    The benchmarks print one JSON line at the end; the peer libraries' own chatter
    (progress bars, deprecation warnings, trainer logs) would bury it.
    """
    import logging
    import warnings

    import datasets
    import torch
    import transformers

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)


#: What every benchmark gives a peer's ``transformers``-based trainer config: CPU in fp32, constant
#: learning rate with no warm-up or weight decay, no checkpointing, saving, logging, progress bars or
#: dataloader workers — so that the timed call is the training itself.
CPU_TRAINER_ARGS: dict[str, object] = {
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "use_cpu": True,
    "bf16": False,
    "fp16": False,
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "logging_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": False,
}
