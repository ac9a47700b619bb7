"""Optimisers of language-model policies against learned or judged rewards, one module per
method: best-of-n sampling (:mod:`.best_of_n`), online RL with TRL's GRPO and RLOO
(:mod:`.grpo`), offline and online DPO (:mod:`.dpo`); shared sampling, KL, the TRL settings
every trainer takes and the gold-vs-proxy evaluation callback in :mod:`.common`. The stages
the training loop (:mod:`rewardlab.algorithms.lm_loop`) calls by name are the ``loop_*``
modules: the run's state and records (:mod:`.loop_state`), who answers queries
(:mod:`.loop_answerers`), feedback rounds (:mod:`.loop_rounds`), evaluation rows
(:mod:`.loop_eval`) and the TRL callbacks (:mod:`.loop_callbacks`). Needs the ``lm`` extra."""
