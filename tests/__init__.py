"""qcc test suite."""
