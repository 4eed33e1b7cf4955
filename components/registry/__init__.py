"""The model registry: the bundle a served model needs, stored in the BentoML model store with its own figures."""
