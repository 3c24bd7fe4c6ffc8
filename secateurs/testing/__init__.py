"""Toy models and helpers for tests, examples and plugin authors."""
