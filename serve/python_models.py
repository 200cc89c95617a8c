"""The Python-backend models of an exported repository (`fertrt export-triton`): each generated model.py
imports one of these as TritonPythonModel. They run inside Triton's Python backend stub, where
`triton_python_backend_utils` exists; errors go back per request, the model keeps serving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

from .models import FACES_INPUT, FACES_OUTPUT, FER_INPUT, FER_OUTPUT, BadRequest, FacesModel, softmax32
from .triton_repo import FACE_DETECTOR, FER_NET, LOGITS, METADATA_FILE


def _pb():
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend

    return pb_utils


def _version_dir(args) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


class _Base:
    """execute() runs each request through self.run(request) -> {name: array}; a FertrtError becomes that
    request's error response (its message names what was expected), other requests are unaffected."""

    def initialize(self, args):
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        pb = _pb()
        responses = []
        for request in requests:
            try:
                outputs = self.run(request)
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in outputs.items()]))
            except FertrtError as exc:
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(exc))))
        return responses

    def run(self, request) -> dict:
        raise NotImplementedError

    def finalize(self):
        pass


def _input(request, name):
    tensor = _pb().get_input_tensor_by_name(request, name)
    if tensor is None:
        raise BadRequest(f"input '{name}' is missing")
    return tensor.as_numpy()


class FerNetModel(_Base):
    """fer_net on fertrt's ONNX Runtime runner (the --platform python variant)."""

    def initialize(self, args):
        from fertrt.runtime.runners import OrtRunner

        super().initialize(args)
        self.runner = OrtRunner(_version_dir(args) / "model.onnx", threads=1)

    def run(self, request):
        return {LOGITS: self.runner.infer(_input(request, FER_INPUT))}

    def finalize(self):
        self.runner.close()


class SoftmaxModel(_Base):
    def run(self, request):
        return {FER_OUTPUT: softmax32(_input(request, LOGITS))}


class DetectorNetModel(_Base):
    """face_detector's graph on fertrt's ONNX Runtime runner (the --platform python variant)."""

    def initialize(self, args):
        from fertrt.runtime.runners import OrtRunner

        super().initialize(args)
        self.runner = OrtRunner(_version_dir(args) / "model.onnx", threads=1)
        meta = json.loads((_version_dir(args) / METADATA_FILE).read_text())["detector"]
        self.runner.output_names = list(meta["detector"]["outputs"])
        self.input_name = self.config["input"][0]["name"]

    def run(self, request):
        return self.runner.infer_outputs(_input(request, self.input_name))

    def finalize(self):
        self.runner.close()


class BlsRunner:
    """A fertrt runner whose graph is another model of the same Triton (a BLS call), so that the detector's and
    the Predictor's own pre- and post-processing run unchanged around it."""

    backend = "triton-bls"

    def __init__(self, model_name: str, metadata: dict, input_name: str, output_names, max_batch: int = 0):
        from fertrt.runtime.runners import Runner

        self._runner = Runner(Path(model_name), metadata)  # validates the metadata, holds labels and preprocessing
        self.path, self.metadata = Path(model_name), metadata
        self.class_names, self.preprocess = self._runner.class_names, self._runner.preprocess
        self.model_name, self.input_name, self.output_names = model_name, input_name, list(output_names)
        self.describe = f"triton:{model_name}"
        self.max_batch = max_batch  # 0: the model takes one whole tensor (no batching)

    def infer_outputs(self, batch: np.ndarray) -> dict:
        """Batches above the model's max_batch_size go in chunks, as Triton would refuse them."""
        step = self.max_batch or len(batch)
        parts = [self._call(batch[i : i + step]) for i in range(0, len(batch), step)]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}

    def _call(self, batch: np.ndarray) -> dict:
        pb = _pb()
        request = pb.InferenceRequest(
            model_name=self.model_name,
            requested_output_names=self.output_names,
            inputs=[pb.Tensor(self.input_name, np.ascontiguousarray(batch, np.float32))],
        )
        response = request.exec()
        if response.has_error():
            raise FertrtError(f"{self.model_name}: {response.error().message()}")
        return {n: pb.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}

    def infer(self, batch):
        return self.infer_outputs(batch)[self.output_names[0]]

    def close(self):
        pass


class FacesBlsModel(_Base):
    """fer_faces: decode, detect through face_detector, crop, classify through fer_net; the same FacesModel
    (and so the same record) as `fertrt serve`."""

    def initialize(self, args):
        from fertrt.runtime.detectors import DetectorConfig, ModelDetector
        from fertrt.runtime.predictor import Predictor

        super().initialize(args)
        meta = json.loads((_version_dir(args) / METADATA_FILE).read_text())
        det_meta = meta["detector"]
        cfg = DetectorConfig.from_json(json.dumps(det_meta["detector"]), FACE_DETECTOR)
        det_runner = BlsRunner(FACE_DETECTOR, det_meta, meta["detector_input"], meta["detector_outputs"])
        detector = ModelDetector(det_runner, cfg)
        fer = meta["fer"]
        predictor = Predictor(BlsRunner(FER_NET, fer, FER_INPUT, [LOGITS], max_batch=int(meta["fer_max_batch"])))
        self.model = FacesModel(predictor, detector, max_images=int(meta["max_images"]))

    def run(self, request):
        images = _input(request, FACES_INPUT)
        docs = self.model(list(images.reshape(-1)))
        return {FACES_OUTPUT: np.array([d.encode() for d in docs], dtype=np.object_)}
