"""The studio (host only): renders MIDI performances into labelled camera video of hands playing a piano."""
