"""Keypress and velocity models (issue 4): definitions, training, and the shipped weights."""
