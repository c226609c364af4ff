"""The Tarana portal: an HTTP client for it and a local simulator that imitates it."""
