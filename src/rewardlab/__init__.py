"""RewardLab: reinforcement learning from preference feedback, with gold-versus-proxy diagnostics.

Importing the package has no side effects; the pipeline lives in its subpackages:
``types`` (records), ``store`` (feedback store), ``feedback`` (teachers, query selection),
``rewards`` (reward models), ``algorithms`` (PEBBLE, preference PPO), ``diagnostics``
(gold vs proxy evaluation, plots) and ``cli``.
"""

__version__ = "0.1.0"
