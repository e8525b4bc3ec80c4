"""Prompt building: wire params → Conversation → the chat template → token ids."""
