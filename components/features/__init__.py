"""Item and shopper features from text: the pretrained encoder, item embeddings, recency-weighted text profiles."""
