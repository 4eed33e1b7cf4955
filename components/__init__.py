"""interest-platform: every pipeline step as a plain, testable function."""
