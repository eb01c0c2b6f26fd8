"""Analytical cost models: pure numpy functions of design points and workloads (no torch, no I/O)."""
