"""Host-side export (issue 5): PyTorch models to ONNX and TensorRT, with INT8 calibration."""
