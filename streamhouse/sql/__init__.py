"""SQL over topics: arrives with its own issue."""
