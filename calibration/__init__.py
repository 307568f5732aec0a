"""Keyboard locking (issue 3): find the keyboard once with SIFT and fix the homography to the canonical strip."""
