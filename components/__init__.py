"""interest-platform: every pipeline step, model and service part as plain, typed functions.

Subpackages by job, imports pointing down only (tests/unit/test_layering.py holds the order):
core <- data <- features <- models <- evaluation <- training <- registry <- feedback <- serving
<- monitoring, analysis, privacy, deployment (none of these four imports another) <- pipeline
<- pipeline_deps (dvc.yaml's module deps, generated) <- benches <- cli. benches/ holds the
benches, simulators and the demo: nothing the product runs imports them.
"""
