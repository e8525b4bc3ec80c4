"""Server tools: the tools Sijo runs itself inside the reply (reference §12) — web_search (its
backends), web_fetch, and code_execution (the sandbox and its containers)."""
