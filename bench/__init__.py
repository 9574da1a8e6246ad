"""Benchmarks: callback acknowledgement against its ceilings, orders end to end, footprint."""
