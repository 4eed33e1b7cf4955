"""Typed view of params.yaml: the only place configuration is read.

- schema.py: every section as a frozen model that forbids unknown keys, so a typo or a missing
  key fails at start with the dotted key named, not deep inside a pipeline step;
- loader.py: reading a params file (with environment overrides) and deriving a copy of it
  whose outputs land elsewhere (a sample, an experiment, another dataset);
- overrides.py: the three override forms (nested dicts, `section.key=value`, INTEREST__ variables);
- reads.py: which keys a step read, so dvc.yaml's params lists can be checked against them.
"""
