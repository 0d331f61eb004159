"""Thin click wrappers, one module per command. The work is done in :mod:`nertools`."""
