"""`fertrt export`: checkpoint -> simplified, checked, verified ONNX with fertrt metadata.

Simplifier: onnxslim (pure Python, maintained, installs everywhere the runtime does; onnxsim
needs a native build on new Pythons). Verification compares PyTorch and ONNX Runtime on real
samples from the checkpoint's data spec and refuses to write a file that misses the tolerance.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output, sha256_file
from fertrt.text import safe

from .metadata import build_metadata, set_metadata


@dataclass
class ExportOptions:
    opset: int = 17
    batch: int | None = None  # None = dynamic batch axis
    simplify: bool = True
    explain: bool = False  # add LNLAttenNet's region weights as a second output
    verify: bool = True
    verify_samples: int = 64
    atol: float = 1e-4
    force: bool = False


def export_module(model, explain: bool = False):
    """The module that gets traced: a wrapper whose forward takes only the image tensor.

    (The TorchScript exporter feeds defaults of extra forward arguments, like `return_aux`, in as
    tensors; a one-argument wrapper keeps the traced graph exactly the logits path.)"""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    class LogitsAndRegions(LogitsOnly):
        def forward(self, x):
            out = self.m(x, return_aux=True)
            return out["logits"], out["region_weights"]

    return (LogitsAndRegions if explain else LogitsOnly)(model).eval()


def verification_batch(data_spec: str, pre, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n real samples (preprocessed NCHW float32, labels) from the spec's test split."""
    from fertrt.runtime.preprocess import preprocess

    from .compare import load_eval_images

    images, labels, _, _ = load_eval_images(data_spec, pre, "test", n, seed)
    return preprocess(images, pre), labels


def logit_report(ref: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "p99_abs_diff": float(np.percentile(diff, 99)) if diff.size else 0.0,
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()) if len(ref) else 1.0,
        "finite": bool(np.isfinite(got).all()),
        "n": int(len(ref)),
    }


def export_checkpoint(checkpoint, output, opts: ExportOptions = ExportOptions(), log=print) -> dict:
    import onnx
    import torch

    from fertrt.train.checkpoint import load_model

    output = check_output(output, overwrite=opts.force, inputs=(checkpoint,), option="-o")
    model, ckpt = load_model(checkpoint)
    pre = model.default_cfg.preprocess
    if opts.explain and not (hasattr(model, "explain") and getattr(model, "has_region_weights", True)):
        raise FertrtError(f"--explain: model {ckpt['model_name']!r} has no region weights to export")
    module = export_module(model, opts.explain)
    output_names = ["logits", "region_weights"] if opts.explain else ["logits"]
    dummy = torch.zeros(opts.batch or 1, pre.channels, *pre.input_size)
    dynamic = None if opts.batch else {name: {0: "batch"} for name in ["input"] + output_names}
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the legacy TorchScript exporter is chosen on purpose (TensorRT-friendly graphs); mute its deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (dummy,),
                buf,
                dynamo=False,
                opset_version=opts.opset,
                input_names=["input"],
                output_names=output_names,
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
    except Exception as exc:  # noqa: BLE001 - tracing errors come in many types
        raise FertrtError(
            f"{checkpoint}: model {ckpt['model_name']!r} does not trace for ONNX export "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    proto = onnx.load_from_string(buf.getvalue())
    if opts.simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    meta = build_metadata(
        ckpt["model_config"],
        checkpoint_sha256=sha256_file(checkpoint),
        data_spec=ckpt["data_spec"],
        export={
            "opset": opts.opset,
            "batch": opts.batch or "dynamic",
            "simplifier": "onnxslim" if opts.simplify else None,
        },
        explain_outputs=output_names[1:],
    )
    set_metadata(proto, meta)
    report = {"output": str(output), "model": ckpt["model_name"], "opset": opts.opset, "nodes": len(proto.graph.node)}
    if opts.verify:
        import onnxruntime as ort

        # pretrained checkpoints name images that are here (their training set is not): ckpt["verify_data"]
        verify_spec = ckpt.get("verify_data") or ckpt["data_spec"]
        x, _ = verification_batch(
            verify_spec,
            pre,
            opts.verify_samples if not opts.batch else opts.batch,
            seed=ckpt.get("train_config", {}).get("seed", 0),
        )
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = np.concatenate(
            [
                sess.run(["logits"], {"input": x[i : i + (opts.batch or 32)]})[0]
                for i in range(0, len(x), opts.batch or 32)
            ]
        )
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        rep = logit_report(ref, got)
        report["verification"] = rep
        log(
            f"verify on {rep['n']} samples of {safe(verify_spec)}: max |diff| {rep['max_abs_diff']:.2e}, "
            f"mean {rep['mean_abs_diff']:.2e}, top-1 agreement {rep['top1_agreement'] * 100:.2f}%"
        )
        if rep["max_abs_diff"] > opts.atol or rep["top1_agreement"] < 1.0 or not rep["finite"]:
            raise FertrtError(
                f"{output}: not written: ONNX Runtime differs from PyTorch beyond tolerance "
                f"(max |diff| {rep['max_abs_diff']:.2e} > {opts.atol:g} or agreement "
                f"{rep['top1_agreement'] * 100:.2f}% < 100%)"
            )
    with atomic_path(output, overwrite=True, inputs=(checkpoint,)) as tmp:
        onnx.save(proto, str(tmp))
    report["sha256"] = sha256_file(output)
    log(
        f"wrote {output} ({output.stat().st_size / 1e6:.2f} MB, {report['nodes']} nodes, opset {opts.opset}, "
        f"{'dynamic batch' if not opts.batch else f'batch {opts.batch}'})"
    )
    return report
