"""Stand-ins for a team's own parts, so the chat examples run offline: ``python examples/chat/make_parts.py``.

Writes ``runs/chat-parts/``:

- ``model/``: a tiny Llama-architecture causal LM pre-trained briefly on the built-in text task's corpus
  (fluent, not aligned), with its tokenizer and chat template, saved
  with ``save_pretrained`` (your model: any causal-LM folder, e.g. a Qwen2, Llama or Mistral checkpoint);
- ``prompts.jsonl``: plain and chat prompts, one ``{"prompt": ...}`` a line (yours: the same shape, or a
  ``datasets`` folder with a ``prompt`` column);
- ``prefs.jsonl``: a TRL-format preference file (``prompt``/``chosen``/``rejected``) preferring nice, brief
  descriptions, for ``rlhfkit fit-reward`` (yours: labelled pairs of your own, TRL, HH-RLHF or scored).

Then, from the repository's root:

    rlhfkit fit-reward --data runs/chat-parts/prefs.jsonl --model tiny --out runs/chat-parts/rm
    rlhfkit run examples/chat-reward-model.toml --out runs/chat
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlhfkit.models.text_builders import tiny_llama_like, train_tiny_tokenizer
from rlhfkit.tasks import text as describe_task


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sentences = describe_task.corpus(4000, seed=0)
    tokenizer = train_tiny_tokenizer(sentences, vocab_size=320)  # it has a chat template, for chat prompts
    model = tiny_llama_like("llama", tokenizer, width=64, positions=256)
    describe_task.pretrain(model, tokenizer, sentences, steps=300)  # fluent, not aligned: a base to improve
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    prompts: list[object] = [f"the {s} {verb}" for s in describe_task.SUBJECTS for verb in ("is", "seems", "looks")]
    prompts += [[{"role": "user", "content": f"describe the {s}"}] for s in describe_task.SUBJECTS]
    (out / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    rows = describe_task.preference_rows(1000, seed=2)
    (out / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {out}/model, {out}/prompts.jsonl ({len(prompts)} prompts), {out}/prefs.jsonl ({len(rows)} pairs)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/chat-parts"))
