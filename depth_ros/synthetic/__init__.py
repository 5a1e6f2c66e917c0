"""Procedural scenes with exact depth and intrinsics (numpy only): training data and geometry oracles.
Imports nothing above the core."""
