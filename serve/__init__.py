"""Serving fertrt models on NVIDIA Triton: `fertrt serve` (a Triton through PyTriton, running fertrt's
runtime) and `fertrt export-triton` (a model repository for a production Triton or a Jetson).

Both serve the same two models with the same tensors (models.py holds the names):
  fer        input  FP32 [-1, C, H, W] (preprocessed face crops) -> probabilities FP32 [-1, K]
  fer_faces  image  BYTES [-1] (encoded JPEG/PNG) -> faces BYTES [-1], one `fertrt infer --jsonl` record per image
"""
