"""FP32 -> FP16 ONNX with NVIDIA ModelOpt's AutoCast (`modelopt.onnx.autocast`).

AutoCast runs the FP32 graph once on ONNX Runtime (CPU) to see each node's value ranges and keeps
in FP32 the nodes whose inputs/outputs would overflow FP16 (|x| > 512 by default) or whose
initializers do not fit it, plus the op types and node names we ask for (fertrt keeps Softmax and
the reductions around attention and pooling, and L2 norms, in FP32). Inputs and outputs stay FP32,
weights are stored as FP16 initializers, and the graph keeps its opset (17 from fertrt export), so
it still parses on TensorRT 8.5/8.6.

Trial that replaced fertrt's own FP16 pass (which it carried because onnxconverter-common 1.16
mistyped the Casts around Resize -> Concat in LNLAttenNet's U-Net): AutoCast (ModelOpt 0.47.0,
onnxruntime 1.32, onnx 1.23) on every registered model - lnlattennet, lnlattennet_paper,
mobilenetv3_small, resnet18, scan_cci, scan_cci_r18 - gave graphs that ONNX Runtime runs, with 100 %
top-1 agreement with FP32 on 48 synth images (initial weights) and max |logit diff| no larger than
our pass's: lnlattennet 4.7e-5 (ours 6.2e-5), lnlattennet_paper 1.6e-5 (2.4e-5), mobilenetv3_small
4.1e-6 (4.1e-6), resnet18 8.7e-4 (8.7e-4), scan_cci_r18 1.0e-4 (1.1e-4), scan_cci 1.5e-4 (1.5e-4);
the Resize -> Concat path is typed correctly. No model needed our pass, so it is gone (git history
has it). AutoCast is slower: its FP32 reference run took 1.3 s on lnlattennet and 81 s on scan_cci
(2 busy CPU cores). Two AutoCast behaviours we steer around:
its plain `convert_to_f16` raises the opset to 19 (TensorRT 8.5 parses up to 17), so we use
`convert_to_mixed_precision`, which keeps it; and its node exclusions are regular expressions, so
node names are escaped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path


def convert_to_fp16(model_path, keep_ops=(), keep_nodes=(), calibration_npz: str | None = None):
    """The FP16 ModelProto of the FP32 model at `model_path` (a private copy: AutoCast reads it by path).
    `calibration_npz`: inputs for AutoCast's range check (default: its random inputs)."""
    from modelopt.onnx.autocast import convert_to_mixed_precision

    logging.disable(logging.WARNING)  # AutoCast reports every node at INFO and harmless typing notes at WARNING
    try:
        return convert_to_mixed_precision(
            str(Path(model_path)),
            low_precision_type="fp16",
            keep_io_types=True,
            op_types_to_exclude=list(keep_ops),
            nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep_nodes],
            calibration_data=calibration_npz,
            providers=["cpu"],
        )
    finally:
        logging.disable(logging.NOTSET)
