"""Keyboard locking (issue 3): find which key is where once (black-key pattern and the keyboard's ends),
fix the homography to the canonical strip, and follow it with SIFT when the camera is bumped."""
