"""Metrics as plain functions, bootstrap intervals, and the cost profile of a strategy."""
