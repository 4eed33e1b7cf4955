"""Configuration, errors, atomic file I/O, device choice, logging, batching: what every layer uses."""
