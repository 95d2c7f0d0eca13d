"""Samples of the gateway and of the generators, and the live view of a run. Never judges."""
