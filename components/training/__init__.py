"""Fitting: the interest model, and the cold-start adapter on its frozen shopper states."""
