"""Anthropic wire types (pydantic): request params, content blocks, Message, stream events, models."""
