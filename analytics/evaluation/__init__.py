"""Evaluation harnesses for the analytics: labelled data sets, scoring rules and baselines."""
