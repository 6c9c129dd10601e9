"""Cross-check our Bradley–Terry and DPO losses against TRL's own code.

With hard labels ``mu = (1, 0)``:

- ``rlhfkit.reward.losses.bradley_terry_loss`` should equal TRL's reward-model
  loss, ``RewardTrainer.compute_loss``: ``-logsigmoid(r_chosen - r_rejected).mean()``
  (no margin, no reward centering);
- ``rlhfkit.optimize.dpo.loss.dpo_loss`` should equal TRL's DPO loss with
  ``loss_type=["sigmoid"]``, ``label_smoothing=0``, ``f_divergence_type="reverse_kl"``:
  ``-logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).mean()``.

TRL is installed into its own venv, ``bench/.venv-trl`` (created on the first run,
which takes a few minutes; later runs reuse it), never into the project's ``.venv``.
This script writes seeded float64 tensors (``--n`` pairs in five blocks of growing
scale: Bradley–Terry margins up to +-100 and DPO logits ``beta * h_raw`` up to about
+-170, so well past +-30) to a temporary ``.pt`` file and
runs itself in the peer venv (``--trl-child``), where TRL's own entry points are
called with minimal stand-ins, no full trainer:

- ``RewardTrainer.compute_loss(stand_in, stub_model, inputs)``: ``stand_in`` has the
  attributes the method reads (``args`` is a real ``RewardConfig``, ``accelerator`` a
  single-process gather), ``stub_model(**inputs)`` returns the given rewards as
  ``.logits`` of shape ``(2B, 1)``, chosen rows first, as TRL's collator lays them.
- ``DPOTrainer.compute_loss(stand_in, stub_model, inputs)`` (which calls
  ``DPOTrainer._compute_loss``): ``stand_in`` copies the loss settings from a real
  ``DPOConfig`` as ``DPOTrainer.__init__`` does, with precomputed reference log-probs
  (``inputs["ref_chosen_logps"]``, ``inputs["ref_rejected_logps"]``); the stub model
  returns the policy's sequence log-probs as ``.log_probs`` over a single completion
  token, so TRL's sum over tokens is the given value.

Both are called once per pair (batch of 1: per-example losses) and once per batch of
``--batch`` pairs (TRL's batch mean). Ours is computed here on the same tensors, on
one-pair slices and on the same batches. The last line printed is one JSON object;
the exit status is 1 when ``max_abs_diff`` exceeds ``--tol``.

    .venv/bin/python bench/loss_crosscheck_trl.py [--n 10000] [--batch 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TRL_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.0", "trl==1.16.0"]
BETA = 0.1
DTYPE = torch.float64


# ----------------------------------------------------------------------------- data


def make_inputs(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded float64 rewards and log-probs in five equal blocks of growing scale."""
    g = torch.Generator().manual_seed(seed)
    blocks = 5
    sizes = [n // blocks + (1 if i < n % blocks else 0) for i in range(blocks)]

    def normal(m: int, std: float) -> torch.Tensor:
        return torch.randn(m, generator=g, dtype=DTYPE) * std

    def uniform(m: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(m, generator=g, dtype=DTYPE)

    # Bradley–Terry: rewards r_chosen, r_rejected. Margins r_c - r_r reach about:
    # 1e-2, 3, 15, 30 (uniform +-30 around a shared offset), and 20..100 either sign.
    rc, rr = [], []
    for i, m in enumerate(sizes):
        if i < 3:
            std = (0.01, 1.0, 5.0)[i]
            rc.append(normal(m, std))
            rr.append(normal(m, std))
        else:
            offset = normal(m, 10.0)
            if i == 3:
                margin = uniform(m, -30.0, 30.0)
            else:
                sign = torch.where(torch.rand(m, generator=g) < 0.5, -1.0, 1.0).to(DTYPE)
                margin = sign * uniform(m, 20.0, 100.0)
                margin[:4] = torch.tensor([30.0, -30.0, 0.0, 0.0], dtype=DTYPE)[: min(4, m)]
            rc.append(offset + margin)
            rr.append(offset)
    # DPO: summed sequence log-probs; ref ~ -U(5, 500), policy = ref + drift with a
    # per-block scale, so h_raw = (pi_c - ref_c) - (pi_r - ref_r) spans 1e-2 .. ~1000
    # and beta * h_raw (the DPO logit) spans 1e-3 .. ~170.
    pc, pr, refc, refr = [], [], [], []
    for i, m in enumerate(sizes):
        std = (0.01, 1.0, 10.0, 100.0, 300.0)[i]
        ref_c, ref_r = -uniform(m, 5.0, 500.0), -uniform(m, 5.0, 500.0)
        refc.append(ref_c)
        refr.append(ref_r)
        pc.append(ref_c + normal(m, std))
        pr.append(ref_r + normal(m, std))
    return {
        "bt_chosen": torch.cat(rc),
        "bt_rejected": torch.cat(rr),
        "policy_chosen_logp": torch.cat(pc),
        "policy_rejected_logp": torch.cat(pr),
        "ref_chosen_logp": torch.cat(refc),
        "ref_rejected_logp": torch.cat(refr),
    }


def batch_slices(n: int, batch: int) -> list[slice]:
    return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


# ----------------------------------------------------------------------------- TRL side (peer venv)


def trl_child(in_path: str, out_path: str) -> None:
    """Runs in the peer venv: TRL's losses on the saved tensors, saved to ``out_path``."""
    import warnings
    from collections import defaultdict
    from types import MethodType, SimpleNamespace

    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*is deprecated", category=FutureWarning)
    import trl
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    data = torch.load(in_path)
    beta, batch = float(data["beta"]), int(data["batch"])
    n = data["bt_chosen"].shape[0]
    tmp = tempfile.mkdtemp(prefix="trl-crosscheck-")

    class Accelerator:  # single process: gathers are the identity
        device = torch.device("cpu")

        @staticmethod
        def gather(x: torch.Tensor) -> torch.Tensor:
            return x

        gather_for_metrics = gather

    def base_stand_in(args: object) -> SimpleNamespace:
        return SimpleNamespace(
            args=args,
            model=SimpleNamespace(training=True),
            accelerator=Accelerator(),
            _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
            _total_train_tokens=0,
            _tp_size=1,
        )

    # --- reward model: RewardTrainer.compute_loss
    # bf16=False/use_cpu=True only let the configs validate on a CPU-only machine; the loss code never reads them.
    common = {"output_dir": tmp, "report_to": "none", "bf16": False, "use_cpu": True}
    rcfg = RewardConfig(**common)
    if rcfg.center_rewards_coefficient is not None:
        raise SystemExit(f"RewardConfig default center_rewards_coefficient={rcfg.center_rewards_coefficient}")
    reward_self = base_stand_in(rcfg)

    class RewardStub:
        """Returns the given rewards as a sequence-classification head's logits."""

        def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
            self.logits = torch.cat([chosen, rejected])[:, None]  # collator order: chosen rows, then rejected

        def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
            assert inputs["input_ids"].shape[0] == self.logits.shape[0]
            return SimpleNamespace(logits=self.logits)

    def trl_reward_loss(sl: slice) -> float:
        c, r = data["bt_chosen"][sl], data["bt_rejected"][sl]
        k = c.shape[0]
        inputs = {
            "input_ids": torch.zeros(2 * k, 1, dtype=torch.long),
            "attention_mask": torch.ones(2 * k, 1, dtype=torch.long),
        }
        loss = RewardTrainer.compute_loss(reward_self, RewardStub(c, r), inputs)
        assert loss.dtype == DTYPE, loss.dtype
        return loss.item()

    # --- DPO: DPOTrainer.compute_loss -> DPOTrainer._compute_loss
    dcfg = DPOConfig(
        **common,
        beta=beta,
        loss_type=["sigmoid"],
        label_smoothing=0.0,
        f_divergence_type="reverse_kl",
        precompute_ref_log_probs=True,
    )
    dpo_self = base_stand_in(dcfg)
    # The loss settings, exactly as DPOTrainer.__init__ copies them from the config.
    dpo_self.beta = dcfg.beta
    dpo_self.precompute_ref_logps = dcfg.precompute_ref_log_probs
    dpo_self.loss_types = dcfg.loss_type
    dpo_self.loss_weights = dcfg.loss_weights or [1.0] * len(dcfg.loss_type)
    dpo_self.ld_alpha = dcfg.ld_alpha
    dpo_self.f_divergence_type = dcfg.f_divergence_type
    dpo_self.f_alpha_divergence_coef = dcfg.f_alpha_divergence_coef
    dpo_self.label_smoothing = dcfg.label_smoothing
    dpo_self.use_weighting = dcfg.use_weighting
    dpo_self.aux_loss_enabled = False
    dpo_self.router_aux_loss_coef = 0.0
    dpo_self.ref_model = None
    dpo_self._compute_loss = MethodType(DPOTrainer._compute_loss, dpo_self)

    class PolicyStub:
        """A policy whose single completion token has the given sequence log-prob."""

        def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
            logps = torch.cat([chosen, rejected])[:, None]  # (2B, 1): batch is [chosen, rejected]
            self.out = SimpleNamespace(
                log_probs=logps,
                entropy=torch.zeros_like(logps),
                mean_logits=torch.zeros_like(logps),
                is_top1=torch.zeros_like(logps, dtype=torch.bool),
            )

        def __call__(self, **kwargs: object) -> SimpleNamespace:
            assert kwargs.get("fused_lm_head") is True and "labels" in kwargs
            return self.out

    def trl_dpo_loss(sl: slice) -> float:
        c, r = data["policy_chosen_logp"][sl], data["policy_rejected_logp"][sl]
        k = c.shape[0]
        inputs = {
            # prompt token + one completion token; shift_completion_mask = completion_mask[:, 1:] = 1
            "input_ids": torch.zeros(2 * k, 2, dtype=torch.long),
            "attention_mask": torch.ones(2 * k, 2, dtype=torch.long),
            "completion_mask": torch.tensor([[0, 1]] * (2 * k), dtype=torch.long),
            "ref_chosen_logps": data["ref_chosen_logp"][sl],
            "ref_rejected_logps": data["ref_rejected_logp"][sl],
        }
        loss = DPOTrainer.compute_loss(dpo_self, PolicyStub(c, r), inputs)
        assert loss.dtype == DTYPE, loss.dtype
        return loss.item()

    rows = [slice(i, i + 1) for i in range(n)]
    batches = batch_slices(n, batch)
    out = {
        "trl_version": str(trl.__version__),
        "torch_version": str(torch.__version__),
        "dpo_config": {"beta": dcfg.beta, "loss_type": dcfg.loss_type, "label_smoothing": dcfg.label_smoothing},
        "bt_per_example": torch.tensor([trl_reward_loss(s) for s in rows], dtype=DTYPE),
        "bt_batch_means": torch.tensor([trl_reward_loss(s) for s in batches], dtype=DTYPE),
        "dpo_per_example": torch.tensor([trl_dpo_loss(s) for s in rows], dtype=DTYPE),
        "dpo_batch_means": torch.tensor([trl_dpo_loss(s) for s in batches], dtype=DTYPE),
    }
    torch.save(out, out_path)


# ----------------------------------------------------------------------------- ours + comparison


def ours(data: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    from rlhfkit.optimize.dpo.loss import dpo_loss
    from rlhfkit.reward.losses import bradley_terry_loss

    n = data["bt_chosen"].shape[0]
    mu = torch.tensor([[1.0, 0.0]], dtype=DTYPE).expand(n, 2)  # hard labels: chosen preferred

    def bt(sl: slice) -> float:
        return bradley_terry_loss(data["bt_chosen"][sl], data["bt_rejected"][sl], mu[sl]).loss.item()

    def dpo(sl: slice) -> float:
        return dpo_loss(
            data["policy_chosen_logp"][sl],
            data["policy_rejected_logp"][sl],
            data["ref_chosen_logp"][sl],
            data["ref_rejected_logp"][sl],
            mu[sl],
            beta=BETA,
        ).loss.item()

    rows = [slice(i, i + 1) for i in range(n)]
    batches = batch_slices(n, batch)
    return {
        "bt_per_example": torch.tensor([bt(s) for s in rows], dtype=DTYPE),
        "bt_batch_means": torch.tensor([bt(s) for s in batches], dtype=DTYPE),
        "dpo_per_example": torch.tensor([dpo(s) for s in rows], dtype=DTYPE),
        "dpo_batch_means": torch.tensor([dpo(s) for s in batches], dtype=DTYPE),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of pairs")
    parser.add_argument("--batch", type=int, default=500, help="batch size for the batch-mean comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--trl-child", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_child:
        trl_child(*args.trl_child)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _peer_env import ensure_peer_venv

    t0 = time.perf_counter()
    peer_python = ensure_peer_venv("trl", TRL_REQUIREMENTS)
    data = make_inputs(args.n, args.seed)
    with tempfile.TemporaryDirectory(prefix="loss-crosscheck-") as tmp:
        in_path, out_path = os.path.join(tmp, "inputs.pt"), os.path.join(tmp, "trl.pt")
        torch.save({**data, "beta": BETA, "batch": args.batch}, in_path)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        t1 = time.perf_counter()
        subprocess.run(
            [str(peer_python), str(Path(__file__).resolve()), "--trl-child", in_path, out_path], check=True, env=env
        )
        trl_out = torch.load(out_path)
        t_trl = time.perf_counter() - t1
    t2 = time.perf_counter()
    mine = ours(data, args.batch)
    t_ours = time.perf_counter() - t2

    diffs = {}
    for key in ("bt_per_example", "bt_batch_means", "dpo_per_example", "dpo_batch_means"):
        a, b = mine[key], trl_out[key]
        if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise SystemExit(f"{key}: shapes {tuple(a.shape)} vs {tuple(b.shape)} or non-finite values")
        diffs[key] = (a - b).abs().max().item()
    bt = max(diffs["bt_per_example"], diffs["bt_batch_means"])
    dpo = max(diffs["dpo_per_example"], diffs["dpo_batch_means"])
    chosen_ratio = data["policy_chosen_logp"] - data["ref_chosen_logp"]
    h = BETA * (chosen_ratio - (data["policy_rejected_logp"] - data["ref_rejected_logp"]))
    print(
        f"TRL {trl_out['trl_version']} (torch {trl_out['torch_version']}), DPO config {trl_out['dpo_config']}; "
        f"n={args.n} pairs, batch means over {len(batch_slices(args.n, args.batch))} batches of {args.batch}; "
        f"|BT margin| <= {(data['bt_chosen'] - data['bt_rejected']).abs().max().item():.1f}, "
        f"|DPO logit| <= {h.abs().max().item():.1f}; TRL per-example losses: "
        + ", ".join(
            f"{k} [{trl_out[k].min().item():.3g}, {trl_out[k].max().item():.3g}]"
            for k in ("bt_per_example", "dpo_per_example")
        ),
        file=sys.stderr,
    )
    print(
        "max |ours - TRL|: "
        + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
        + f"; TRL child {t_trl:.1f} s, ours {t_ours:.1f} s, total {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    result = {
        "max_abs_diff": max(bt, dpo),
        "bt_max_abs_diff": bt,
        "dpo_max_abs_diff": dpo,
        "trl_version": trl_out["trl_version"],
        "n": args.n,
    }
    print(json.dumps(result))
    return 0 if result["max_abs_diff"] <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
