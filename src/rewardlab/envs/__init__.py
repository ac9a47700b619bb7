"""Environments: the learned-reward wrapper and small registered toy tasks."""
