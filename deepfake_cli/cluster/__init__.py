"""Running scans and extraction past one machine (Ray)."""
