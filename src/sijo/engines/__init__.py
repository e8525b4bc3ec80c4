"""Engines: what turns prompt tokens into generated text. `base.Engine` is the one protocol."""
