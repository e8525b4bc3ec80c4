"""Output: engine chunks → stop matching → stream events; `accumulate` folds events into a Message."""
