"""Offline RL from a fixed dataset, one module per method, each on plain arrays:

* :mod:`~rewardlab.algorithms.offline.iql`: implicit Q-learning (Kostrikov et al. 2022), its
  update jitted in :mod:`~rewardlab.algorithms.offline.iql_step` (JAX);
* :mod:`~rewardlab.algorithms.offline.td3bc`: TD3+BC (Fujimoto & Gu 2021);
* :mod:`~rewardlab.algorithms.offline.cpl`: contrastive preference learning, straight from
  labelled segment pairs (Hejna et al. 2024);
* :mod:`~rewardlab.algorithms.offline.common`: checked dataset records, batch sampling, small
  networks and pickle-free checkpoints they share;
* :mod:`~rewardlab.algorithms.offline.relabel` and
  :mod:`~rewardlab.algorithms.offline.loop_state`: the training reward (relabelled, rescaled)
  and the state, checkpoints and summary of the offline loop,
  :mod:`rewardlab.algorithms.offline_loop`.

Importing this package imports nothing else (no torch until a method module is imported).
"""
