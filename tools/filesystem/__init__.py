"""Helpers of the file tools: confinement to the roots (paths), the file index, and search over it."""
