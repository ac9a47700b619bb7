"""Diagnostics: gold-versus-proxy evaluation, metric logging and plots."""
