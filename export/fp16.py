"""A careful FP32 -> FP16 pass over an ONNX graph.

Every float tensor becomes FP16 except: the graph inputs and outputs (FP32, with Cast nodes at the
boundary), the inputs and outputs of nodes kept in FP32 (by op type or name), and inputs that the
ONNX schema requires to be float32 (Resize roi/scales). Weights are stored as FP16 initializers
(no Cast on weights), which is what a strongly typed TensorRT network wants.
(onnxconverter-common 1.16 mistypes the casts around Resize -> Concat in our U-Net, hence our own pass.)
"""
from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0
# (op type) -> input positions that must stay float32 whatever the data type
_FP32_INPUT_SLOTS = {"Resize": {1, 2}, "Upsample": {1}}


def _to_half(arr: np.ndarray) -> np.ndarray:
    # Clamp to FP16's finite range; tiny magnitudes underflow to 0 / subnormals as IEEE does.
    return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


def convert_to_fp16(model, keep_ops=(), keep_nodes=()):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    dtype = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        dtype[t.name] = t.data_type
    keep = {n.name for n in g.node if n.op_type in keep_ops or n.name in keep_nodes}

    new_nodes, cast_cache = [], {}
    current = {}  # tensor name -> its element type in the new graph

    for vi in g.input:
        current[vi.name] = dtype.get(vi.name)
    half_inits = {}

    def as_type(name, want):
        """Name of `name` converted to `want` (FLOAT or HALF), inserting a Cast or an FP16 initializer copy."""
        if not name:
            return name
        have = current.get(name, dtype.get(name))
        if name in inits and inits[name].data_type == FLOAT and want == HALF:
            if name not in half_inits:
                arr = numpy_helper.to_array(inits[name])
                half_inits[name] = numpy_helper.from_array(_to_half(arr), name + "_fp16")
            return name + "_fp16"
        if have not in (FLOAT, HALF) or have == want:
            return name
        key = (name, want)
        if key not in cast_cache:
            out = f"{name}_to_{'fp16' if want == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=want, name=f"{out}_cast"))
            current[out] = want
            cast_cache[key] = out
        return cast_cache[key]

    for node in g.node:
        fp32_node = node.name in keep
        slots = _FP32_INPUT_SLOTS.get(node.op_type, set())
        for i, name in enumerate(node.input):
            if name and dtype.get(name) in (FLOAT, HALF) or name in current and current.get(name) in (FLOAT, HALF):
                want = FLOAT if (fp32_node or i in slots) else HALF
                node.input[i] = as_type(name, want)
        if not fp32_node:
            if node.op_type == "Cast":
                for a in node.attribute:
                    if a.name == "to" and a.i == FLOAT:
                        a.i = HALF
            for a in node.attribute:  # Constant / ConstantOfShape carry float tensors in attributes
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(a.t)), a.t.name))
        for out in node.output:
            if dtype.get(out) in (FLOAT, HALF):
                current[out] = FLOAT if fp32_node else HALF
            else:
                current[out] = dtype.get(out)
        new_nodes.append(node)

    # graph outputs stay FP32: rename the producer's output and cast back under the original name
    for vo in g.output:
        if current.get(vo.name) == HALF:
            inner = vo.name + "_fp16"
            for n in new_nodes:
                for i, o in enumerate(n.output):
                    if o == vo.name:
                        n.output[i] = inner
                for i, o in enumerate(n.input):
                    if o == vo.name:
                        n.input[i] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [vo.name], to=FLOAT, name=f"{vo.name}_to_fp32_cast"))

    del g.node[:]
    g.node.extend(new_nodes)
    used = {i for n in g.node for i in n.input}
    keep_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_inits + [t for t in half_inits.values() if t.name in used])
    del g.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
