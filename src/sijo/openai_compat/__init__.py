"""The OpenAI SDK compatibility layer's translation, both ways, onto the one Messages pipeline.

`request.py` turns a chat completion request into `MessageCreateParams` (and names the client's own
fields in errors); `reply.py` turns the resulting `Message`, or its stream events, into OpenAI's
`chat.completion` and `chat.completion.chunk` shapes. What runs in between is `MessagesService`,
exactly as for POST /v1/messages.
"""
