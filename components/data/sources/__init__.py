"""Read the raw files of a dataset, one module per layout, each reading every file its layout defines."""
