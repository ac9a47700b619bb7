"""Optimisers of language-model policies against learned or judged rewards, one module per
method: best-of-n sampling (:mod:`.best_of_n`), online RL with TRL's GRPO and RLOO
(:mod:`.grpo`), offline and online DPO (:mod:`.dpo`); shared sampling, KL and the
gold-vs-proxy evaluation callback in :mod:`.common`. Needs the ``lm`` extra."""
