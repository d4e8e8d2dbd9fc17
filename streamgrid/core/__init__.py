"""What every component shares: frames and their scores, the store, URLs, logs."""
