"""Shoppers' privacy beyond pseudonyms: the right to be forgotten across every store."""
