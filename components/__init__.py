"""interest-platform: every pipeline step, model and service part as plain, typed functions.

Subpackages by job, imports pointing down only (tests/unit/test_layering.py holds the order):
core <- data <- features <- models <- evaluation <- training <- registry <- serving <- pipeline <- cli.
"""
