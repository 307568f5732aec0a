"""The lean on-device runtime (issue 6): source, fixed warp, batched key inference, decoding, MIDI sinks.

Imports only numpy, opencv, onnxruntime and mido; never torch.
"""
