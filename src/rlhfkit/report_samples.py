"""The report's "What the policy does" section: the base and the latest policy side by side.

Text runs show each sampled prompt with the base model's and the latest policy's
completion (same prompt, same random seed) and the task's true reward of each. Control
runs show a rollout of each policy as an animated GIF and a strip of eight frames,
drawn from the saved observations by the web app's renderer (:mod:`rlhfkit.app.media`,
imported only here and only when there is a rollout to draw). Rendered files are kept
next to the samples (``samples/round_NNNN.gif``, ``round_NNNN-frames.png``) and redrawn
only when the samples are newer.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.domains.samples import read_samples, rollout_segment, sample_path
from rlhfkit.files import atomic_write_bytes
from rlhfkit.report import number

STRIP_FRAMES = 8
"""Frames in a rollout's strip (two rows of four)."""
STRIP_HEIGHT = 120
"""Pixels high of each frame in a strip."""


def samples_section(run_dir: Path, rounds: list[int]) -> str:
    """HTML for the base (round 0) and the latest round with samples among ``rounds``; empty if none."""
    saved = read_samples(run_dir)
    have = sorted(k for k in rounds if k in saved)
    if not have:
        return ""
    base, latest = have[0], have[-1]
    if saved[base]["domain"] == "text":
        body = _text(saved[base], saved[latest], base, latest)
    else:
        body = _control(run_dir, saved, base, latest)
    return f"<h2>What the policy does</h2>\n{body}\n"


def _label(k: int) -> str:
    return "base policy (round 0)" if k == 0 else f"policy of round {k}"  # a run resumed from before samples


def _text(base: dict[str, Any], latest: dict[str, Any], k0: int, k1: int) -> str:
    intro = (
        "<p>Completions of the same prompts, drawn with the same random seed, by the "
        f"{_label(k0)} and the latest policy (round {k1}), each with the task's true reward.</p>"
    )
    if k0 == k1:
        intro = f"<p>Completions by the {_label(k0)}; no round has finished yet, so there is no latest policy.</p>"
    later = {s["prompt"]: s for s in latest["samples"]}
    head = f"<tr><th>prompt</th><th>{_label(k0)}</th>" + ("" if k0 == k1 else f"<th>latest (round {k1})</th>")
    rows = []
    for s in base["samples"]:
        cells = [html.escape(s["prompt"]), _completion(s)]
        if k0 != k1:
            other = later.get(s["prompt"])
            cells.append(_completion(other) if other else "—")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'{intro}\n<table class="samples">\n<thead>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def _completion(sample: dict[str, Any]) -> str:
    text = html.escape(sample["completion"]) or "<i>(empty)</i>"
    scores = [
        f"{name} {number(float(sample[key]))}"
        for key, name in (("true_reward", "true reward"), ("learned_reward", "reward model"))
        if sample.get(key) is not None
    ]
    return f'{text} <span class="score">{", ".join(scores)}</span>'


def _control(run_dir: Path, saved: dict[int, dict[str, Any]], k0: int, k1: int) -> str:
    figures = []
    for k in dict.fromkeys([k0, k1]):  # one figure when only round 0 exists
        data = saved[k]
        steps = len(data["true_rewards"])
        ret = float(np.sum(data["true_rewards"]))
        who = _label(k) if k == k0 else f"latest policy (round {k})"
        caption = f"{who}: true return {number(ret)} over its first {steps} steps"
        try:
            gif, strip, replay = _rendered(run_dir, k, data)
        except Exception as e:  # a report must not stop a run: say why there is no picture instead
            figures.append(
                f"<figure><figcaption>{html.escape(caption)}</figcaption>"
                f"<p>(could not draw this rollout: {html.escape(str(e))})</p></figure>"
            )
            continue
        if not replay:
            caption += " (the env cannot be redrawn from observations: observation traces instead)"
        figures.append(
            f"<figure><figcaption>{html.escape(caption)}</figcaption>"
            f'<img src="{gif}" alt="rollout, {html.escape(who)}"><br>'
            f'<img src="{strip}" alt="frames of the rollout, {html.escape(who)}"></figure>'
        )
    seed = saved[k0].get("seed")
    intro = (
        "<p>One episode of each policy from the same start"
        + (f" (env seed {html.escape(str(seed))})" if seed is not None else "")
        + ", acting deterministically: the animation and, below it, frames spread over the episode.</p>"
    )
    return intro + '\n<div class="pair">\n' + "\n".join(figures) + "\n</div>"


def _rendered(run_dir: Path, k: int, data: dict[str, Any]) -> tuple[str, str, bool]:
    """The GIF and frame strip of round ``k``'s rollout (paths relative to the run folder), drawing them if stale."""
    source = sample_path(run_dir, k)
    gif, strip = source.with_suffix(".gif"), source.with_name(source.stem + "-frames.png")
    marker = source.with_name(source.stem + "-traces")  # present when the frames are observation traces
    fresh = all(p.exists() and p.stat().st_mtime >= source.stat().st_mtime for p in (gif, strip))
    if not fresh:
        from rlhfkit.app.media import encode, render_frames

        frames, fps, replay = render_frames(rollout_segment(data))
        atomic_write_bytes(gif, encode(frames, fps, "gif"))
        atomic_write_bytes(strip, _strip(frames))
        if replay:
            marker.unlink(missing_ok=True)
        else:
            marker.touch()
    rel = source.parent.name
    return f"{rel}/{gif.name}", f"{rel}/{strip.name}", not marker.exists()


def _strip(frames: list[np.ndarray]) -> bytes:
    """A PNG of :data:`STRIP_FRAMES` frames spread over the rollout, two rows of four, each marked with its step.

    Frames are halved to :data:`STRIP_HEIGHT` pixels, so a strip fits half a page at its own size.
    """
    from PIL import Image, ImageDraw, ImageFont

    n = min(STRIP_FRAMES, len(frames))
    picks = sorted({round(i * (len(frames) - 1) / max(n - 1, 1)) for i in range(n)})
    h0, w0 = frames[0].shape[:2]
    h, w = STRIP_HEIGHT, max(1, round(w0 * STRIP_HEIGHT / h0))
    cols = min(4, len(picks))
    rows = math.ceil(len(picks) / cols)
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for i, t in enumerate(picks):
        x, y = (i % cols) * w, (i // cols) * h
        frame = Image.fromarray(np.ascontiguousarray(frames[t][:, :, :3])).resize((w, h), Image.Resampling.LANCZOS)
        sheet.paste(frame, (x, y))
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(190, 190, 190))
        draw.text((x + 4, y + 2), f"step {t}", fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
