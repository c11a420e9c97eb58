"""Experiments: studies and training runs built on the polytopes, solvers and estimators."""
