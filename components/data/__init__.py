"""Shop data: source readers (one per file layout), ingestion, Great Expectations validation, the split."""
