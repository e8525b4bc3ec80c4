"""Sijo: a self-hosted implementation of the Claude API over open-weight models."""

__version__ = "0.1.0"
