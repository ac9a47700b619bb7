"""Offline datasets: a fixed log of transitions, read from and written to Minari.

An :class:`OfflineDataset` holds one row per transition, episodes one after the other, as
D4RL lays its datasets out (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement
Learning"): the observation the action was taken in, the action, the next observation, the
environment's (true) reward, and whether the step terminated or truncated the episode. The
true reward is kept for gold evaluation and for the true-reward reference only: preference
methods learn from labels, never from it.

Storage is Minari (Farama Foundation, ``minari`` 0.5): a dataset with id
``(namespace/)name-vN`` is the directory ``<root>/<id>/data`` (``metadata.json`` and the
episodes, HDF5 by default), where ``<root>`` is ``MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``). In a Minari episode of ``T`` steps there are ``T + 1`` observations
(the last one is the final observation), ``T`` actions, rewards, terminations and truncations,
and ``infos``, a dict of arrays of ``T + 1`` rows (the reset info, then one per step: the
convention of Minari's ``DataCollector``). RewardLab keeps the MuJoCo simulator state
``concat(qpos, qvel)`` in ``infos["render_state"]`` (row ``t``: the state observation ``t`` was
taken in; row ``T``: the final state), from which the web app renders clips of dataset
segments (:mod:`rewardlab.feedback.clips`).

Datasets RewardLab makes (:mod:`rewardlab.algorithms.dataset_tiers`) live in the ``rewardlab``
namespace, e.g. ``rewardlab/halfcheetah/medium-replay-v0``, and carry ``ref_min_score`` and
``ref_max_score`` (a random and the expert policy's mean return) in their metadata, as Minari's
D4RL ports do, for D4RL normalised scores (:func:`normalized_score`). Nothing is ever
downloaded: an id that is not on this machine is a :class:`~rewardlab.errors.MissingDatasetError`.

This module never imports torch; Minari is imported when a dataset is read or written.

Modules: :mod:`~rewardlab.data.offline.record` (the record, normalised scores),
:mod:`~rewardlab.data.offline.minari_io` (Minari ids, reading, writing, listing) and
:mod:`~rewardlab.data.offline.collect` (recording transitions from an env). Generating the
D4RL tiers needs an agent, so it lives in :mod:`rewardlab.algorithms.dataset_tiers`.
"""

from rewardlab.data.offline.minari_io import (
    DATA_FORMAT,
    KNOWN_ENVS,
    METADATA_KEY,
    NAMESPACE,
    RENDER_STATE_KEY,
    TIERS,
    dataset_metadata,
    datasets_root,
    env_slug,
    final_render_states,
    list_offline_datasets,
    load_offline_dataset,
    parse_dataset_id,
    tier_dataset_id,
    write_minari_dataset,
)
from rewardlab.data.offline.record import OfflineDataset, concatenate, normalized_score

__all__ = [
    "DATA_FORMAT", "KNOWN_ENVS", "METADATA_KEY", "NAMESPACE", "RENDER_STATE_KEY", "TIERS",
    "OfflineDataset", "concatenate", "dataset_metadata", "datasets_root", "env_slug",
    "final_render_states", "list_offline_datasets", "load_offline_dataset", "normalized_score",
    "parse_dataset_id", "tier_dataset_id", "write_minari_dataset",
]
