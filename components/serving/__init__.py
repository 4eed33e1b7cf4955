"""Answering requests: one Recommender loaded once from a bundle, added products, the no-history default."""
