"""Understanding shoppers: A/B analysis."""
