"""Tracking: tokens (``tokens``) and per-recipient message rewriting (``rewrite``)."""
