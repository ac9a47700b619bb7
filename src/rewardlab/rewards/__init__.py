"""Reward models learned from preferences: Bradley-Terry ensembles and their losses."""
