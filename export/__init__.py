"""Export stage: ONNX with metadata, FP16 and INT8 (Q/DQ) models, and the comparator.

This is where precision is decided: TensorRT 10/11 build strongly typed networks from these graphs.
"""
