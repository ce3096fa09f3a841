"""The Orchestra API: health of its data stores, and notes kept in all three of them."""
