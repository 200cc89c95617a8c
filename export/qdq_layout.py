"""Where a Q/DQ graph quantizes: every QuantizeLinear/DequantizeLinear pair classified by what
feeds it and what reads it, for the placement test and the layouts benchmark.

TensorRT's Q/DQ placement guidance: quantize the inputs of weighted ops (Conv, ConvTranspose,
Gemm, MatMul), not their outputs; quantize the residual input of an Add fed by a Conv so the two
fuse in INT8; weights per-channel symmetric, activations per-tensor symmetric. A Q/DQ on a weighted
op's output is in line with that only when what reads it wants a quantized input itself (another
weighted op, an Add, pooling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ops whose INT8 inputs TensorRT uses (it fuses a Q/DQ before them into an INT8 kernel)
WANTS_INT8_INPUT = WEIGHTED_OPS + ("Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat")
_PASS_THROUGH = ("Cast",)  # ModelOpt's FP16 rest puts Casts around Q/DQ; look through them


@dataclass
class QdqPair:
    tensor: str  # the tensor quantized
    producer: str  # op type writing it ('input' for a graph input, 'weight' for an initializer)
    consumers: list  # op types reading the dequantized tensor
    consumer_nodes: list
    per_channel: bool
    symmetric: bool


@dataclass
class QdqLayout:
    weights: list = field(default_factory=list)
    activations: list = field(default_factory=list)

    def counts(self) -> dict:
        """Q/DQ pairs by placement (the benchmark's columns)."""
        acts = self.activations
        return {
            "weights": len(self.weights),
            "weighted_op_inputs": sum(1 for a in acts if any(c in WEIGHTED_OPS for c in a.consumers)),
            "weighted_op_outputs": sum(1 for a in acts if a.producer in WEIGHTED_OPS),
            "add_inputs": sum(1 for a in acts if "Add" in a.consumers),
            "activations": len(acts),
        }

    def unjustified_weighted_outputs(self) -> list:
        """Q/DQ on a weighted op's output whose readers do not all want an INT8 input."""
        return [
            a
            for a in self.activations
            if a.producer in WEIGHTED_OPS and not all(c in WANTS_INT8_INPUT for c in a.consumers)
        ]


def _const(model, name):
    from onnx import numpy_helper

    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def qdq_layout(model) -> QdqLayout:
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    inits = {t.name for t in g.initializer}
    graph_inputs = {i.name for i in g.input}

    def source(name):
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            name = node.input[0]
            node = producer.get(name)
        if node is None:
            return "weight" if name in inits else ("input" if name in graph_inputs else "constant")
        if node.op_type == "Constant":
            return "weight"
        return node.op_type

    def final_readers(name):
        out = []
        for r in readers.get(name, []):
            if r.op_type in _PASS_THROUGH:
                out.extend(final_readers(r.output[0]))
            else:
                out.append(r)
        return out

    layout = QdqLayout()
    for q in g.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = [r for r in readers.get(q.output[0], []) if r.op_type == "DequantizeLinear"]
        scale = _const(model, q.input[1])
        zp = _const(model, q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros(1, np.int8)
        consumers = [r for dq in dqs for r in final_readers(dq.output[0])]
        pair = QdqPair(
            tensor=q.input[0],
            producer=source(q.input[0]),
            consumers=[c.op_type for c in consumers],
            consumer_nodes=[c.name for c in consumers],
            per_channel=scale is not None and np.asarray(scale).size > 1,
            symmetric=zp is not None and not np.asarray(zp).any() and np.asarray(zp).dtype == np.int8,
        )
        (layout.weights if pair.producer == "weight" else layout.activations).append(pair)
    # weights stored already quantized (INT8 initializer -> DequantizeLinear, no QuantizeLinear)
    for dq in g.node:
        if dq.op_type == "DequantizeLinear" and dq.input[0] in inits and source(dq.input[0]) == "weight":
            arr = _const(model, dq.input[0])
            if arr is not None and arr.dtype == np.int8:
                scale = _const(model, dq.input[1])
                zp = _const(model, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros(1, np.int8)
                readers_ = final_readers(dq.output[0])
                layout.weights.append(
                    QdqPair(
                        dq.input[0],
                        "weight",
                        [r.op_type for r in readers_],
                        [r.name for r in readers_],
                        np.asarray(scale).size > 1,
                        not np.asarray(zp).any(),
                    )
                )
    return layout


def residual_add_inputs(model) -> list[tuple[str, bool]]:
    """For every Add with one input written (through Casts) by a Conv: (Add node, whether its other,
    residual input arrives through a DequantizeLinear)."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}

    def through(name):
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producer.get(node.input[0])
        return node

    out = []
    for n in g.node:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        srcs = [through(i) for i in n.input]
        kinds = [s.op_type if s is not None else None for s in srcs]
        if "Conv" not in kinds:
            continue
        residual = kinds[1 - kinds.index("Conv")]  # the input the Conv did not write
        out.append((n.name, residual == "DequantizeLinear"))
    return out
