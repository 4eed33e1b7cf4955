"""Watching what is served: the feedback that comes back, checked before it may become training
data, and the online metrics of each model version, arm and policy."""
