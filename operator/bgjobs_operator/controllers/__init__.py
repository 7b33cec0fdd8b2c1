"""Reconcilers: read what is observed, call the pure builders, write the difference."""
