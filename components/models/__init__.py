"""Recommenders behind one Scorer contract: the interest model, its checkpoint, baselines, fusion."""
