"""What shoppers did with what they were shown: the durable feedback store (events and served slates)."""
