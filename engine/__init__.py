"""TensorRT engine builder for TensorRT 8.5 through 11 (JetPack 5, 6, 7 and desktop GPUs).

Everything that decides (capabilities, the build plan, profiles, cache keys, sidecars, the
trtexec line) is plain Python; the TensorRT calls live in `builder.py` and stay thin.
"""
