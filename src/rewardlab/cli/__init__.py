"""Command-line entry points (``rewardlab``). Nothing imports this package."""
