"""pianoedge: muted piano video in, MIDI with velocities and regenerated audio out."""

__version__ = "0.1.0"
