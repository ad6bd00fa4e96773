"""Computer-control internals: the screen (grab, geometry, scaling)."""
