"""The cost of RewardLab's language-model wrappers: throughput of GRPO (completions/s), DPO
(pairs/s) and reward-model training (pairs/s) through RewardLab against the same TRL trainer
called directly with the same settings, side by side, on a tiny GPT-2.

Each side runs once untimed (warm-up), then ``--repeats`` times, direct and wrapped in
alternating order so that both see the same machine load. Each run is timed end to end
(building the trainer, training, saving the policy) by this process's CPU time (one thread: the
work done, robust to other processes sharing the core) and by wall time; TRL's own
``train_runtime`` is kept too. ``wrapper_overhead`` is the fractional slowdown
``median(wrapped) / median(direct) - 1`` of the CPU time (target: within 0.10).

For reward training RewardLab does not wrap ``RewardTrainer`` (it trains its ensemble with
the Bradley-Terry loss it shares with the control track), so the comparison is
:class:`~rewardlab.rewards.text_model.TextRewardEnsemble` with one member against
``RewardTrainer`` on the same pairs, batch size, learning rate and epochs.

Run on one core, one thread, offline::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 1 python benchmarks/lm_wrapper_overhead.py

Prints one JSON object. ``--base DIR`` uses an existing ``save_pretrained`` causal LM; without it
the tests' tiny GPT-2 (2 layers, 64 wide, 300-token byte-level BPE) is built in a temporary
directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _quiet(trainer):  # noqa: ANN001, ANN202
    """The wrappers return TRL's logs instead of printing them; the direct runs do the same."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _side_by_side(direct, wrapped, repeats: int) -> dict[str, dict[str, list[float]]]:  # noqa: ANN001
    """Run both once untimed (warm-up), then ``repeats`` timed pairs in alternating order.

    Returns ``{"wall": {"direct": [...], "wrapped": [...]}, "cpu": {...}, "train_runtime":
    {...}}`` in seconds; ``cpu`` is this process's CPU time (one thread: the work done, without
    the time spent waiting for a shared core); ``train_runtime`` is TRL's own (if returned).
    """
    direct(-1)
    wrapped(-1)
    out = {key: {"direct": [], "wrapped": []} for key in ("wall", "cpu", "train_runtime")}
    for r in range(repeats):
        order = [("direct", direct), ("wrapped", wrapped)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            runtime = fn(r)
            out["cpu"][name].append(time.process_time() - c0)
            out["wall"][name].append(time.perf_counter() - w0)
            if runtime is not None:
                out["train_runtime"][name].append(runtime)
    return out


def bench_grpo(base: Path, work: Path, repeats: int, steps: int) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from rewardlab.algorithms.lm.common import TRLReward
    from rewardlab.algorithms.lm.grpo import OnlineRLConfig, train_online_rl, trl_config
    from tests.lm.tiny_text_model import SUBJECTS, gold

    def vader(prompts, completions):
        return gold(list(completions))

    config = OnlineRLConfig(steps=steps, batch_size=16, num_generations=4,
                            max_completion_length=8, learning_rate=1e-3, eval_every=0)

    def direct(r: int) -> float:
        out = work / f"grpo_direct_{r}"
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        trainer = _quiet(GRPOTrainer(
            model=str(base), reward_funcs=TRLReward(vader, "proxy"),
            args=trl_config(config, out), processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"prompt": SUBJECTS})))
        trainer.train()
        trainer.save_model(str(out / "policy"))
        return trainer.state.log_history[-1]["train_runtime"]

    def wrapped(r: int) -> float:
        result = train_online_rl(base, SUBJECTS, vader, work / f"grpo_wrapped_{r}", config)
        return result.log_history[-1]["train_runtime"]

    return _summary("completions_per_s", steps * config.batch_size,
                    _side_by_side(direct, wrapped, repeats))


def bench_dpo(base: Path, work: Path, repeats: int, epochs: int) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    from rewardlab.algorithms.lm.dpo import DPOSettings, dpo_trl_config, train_dpo
    from tests.lm.tiny_text_model import sentences

    pos, neg = sentences("positive"), sentences("negative")  # same subject/verb order
    triples = {"prompt": [p.rsplit(" ", 1)[0] for p in pos],
               "chosen": [" " + p.rsplit(" ", 1)[1] for p in pos],
               "rejected": [" " + n.rsplit(" ", 1)[1] for n in neg]}
    settings = DPOSettings(batch_size=16, epochs=epochs, learning_rate=1e-4)

    def direct(r: int) -> float:
        out = work / f"dpo_direct_{r}"
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        trainer = _quiet(DPOTrainer(
            model=str(base), args=dpo_trl_config(settings, out),
            train_dataset=Dataset.from_dict(triples), processing_class=tokenizer))
        trainer.train()
        trainer.save_model(str(out / "policy"))
        return trainer.state.log_history[-1]["train_runtime"]

    def wrapped(r: int) -> float:
        result = train_dpo(base, triples, work / f"dpo_wrapped_{r}", settings)
        return result.log_history[-1]["train_runtime"]

    return _summary("pairs_per_s", len(triples["prompt"]) * epochs,
                    _side_by_side(direct, wrapped, repeats))


def bench_reward(base: Path, work: Path, repeats: int, epochs: int) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardlab.rewards.text_model import TextRewardConfig, TextRewardEnsemble
    from tests.lm.tiny_text_model import sentences

    rng = np.random.default_rng(0)
    n, batch, lr = 512, 32, 1e-3
    chosen = [str(x) for x in rng.choice(sentences("positive"), n)]
    rejected = [str(x) for x in rng.choice(sentences("negative"), n)]
    pairs = [("", c, r) for c, r in zip(chosen, rejected, strict=True)]
    targets = np.ones(n, dtype=np.float32)

    def direct(r: int) -> None:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        args = RewardConfig(
            output_dir=str(work / f"rm_direct_{r}"), per_device_train_batch_size=batch,
            learning_rate=lr, lr_scheduler_type="constant", num_train_epochs=epochs, seed=0,
            use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, bf16=False,
            gradient_checkpointing=False, logging_steps=10, dataloader_num_workers=0)
        _quiet(RewardTrainer(
            model=str(base), args=args, processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"chosen": chosen, "rejected": rejected}))).train()

    def wrapped(r: int) -> None:
        model = TextRewardEnsemble.from_base(base, TextRewardConfig(members=1), seed=0)
        model.fit(pairs, targets, epochs=epochs, batch_size=batch, lr=lr, seed=0,
                  val_fraction=0.0)

    return _summary("pairs_per_s", n * epochs, _side_by_side(direct, wrapped, repeats))


def _summary(unit: str, items: int, times: dict) -> dict:
    out: dict = {"items": items}
    for clock in ("cpu", "wall"):
        direct, wrapped = _median(times[clock]["direct"]), _median(times[clock]["wrapped"])
        out[f"{clock}_direct_{unit}"] = items / direct
        out[f"{clock}_wrapped_{unit}"] = items / wrapped
        out[f"{clock}_slowdown"] = wrapped / direct - 1.0
    if times["train_runtime"]["direct"]:
        out["train_runtime_slowdown"] = _median(times["train_runtime"]["wrapped"]) / _median(
            times["train_runtime"]["direct"]) - 1.0
    out["seconds"] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=None, help="save_pretrained causal LM")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2, help="DPO and reward-model epochs")
    parser.add_argument("--only", choices=["grpo", "dpo", "reward"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = args.base
        if base is None:
            from tests.lm.tiny_text_model import build_tiny_lm

            base = build_tiny_lm(work / "tiny_lm")
        results = {}
        if args.only in (None, "grpo"):
            results["grpo"] = bench_grpo(base, work, args.repeats, args.grpo_steps)
        if args.only in (None, "dpo"):
            results["dpo"] = bench_dpo(base, work, args.repeats, args.epochs)
        if args.only in (None, "reward"):
            results["reward"] = bench_reward(base, work, args.repeats, args.epochs)
    report = {
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "wrapper_overhead": {name: r["cpu_slowdown"] for name, r in results.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
