"""Triton Python-backend model `face_detector_ssd`, written by `fertrt export-deepstream`.

DeepStream's nvinferserver sends it letterboxed, normalised frames (`input` FP32 [-1, 3, H, W]). It runs the
repository's raw BlazeFace model (`face_detector`, through BLS, so the detector stays on TensorRT or ONNX
Runtime inside Triton), decodes the anchors and applies NMS with fertrt's own numpy code, and answers with the
four tensors DeepStream's stock parser NvDsInferParseCustomTfSSD reads (libnvds_infercustomparser.so):
num_detections [1], detection_boxes [N, 4] (y1, x1, y2, x2 as fractions of the network input),
detection_scores [N], detection_classes [N] (all 0: face), zero-padded to N = max_faces.
The boxes are the crops fertrt's face pipeline classifies (runtime/face.py crop_transform without the rotation):
square, the detection's longer side times (1 + 2 * crop_margin), centre moved by crop_shift box heights, so that
the secondary FER classifier sees the framing its model was trained on.
Needs fertrt (its runtime, no torch) in the Python environment of Triton's Python backend.
"""

import json

import numpy as np

SSD_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def ssd_tensors(regressors, scores, settings, anchors):
    """One image's raw BlazeFace outputs -> (num_detections, boxes, scores, classes) in the TF-SSD layout."""
    from fertrt.runtime.detectors import decode_blazeface, nms

    boxes, found, points = decode_blazeface(regressors, scores, anchors, settings["score_threshold"])
    boxes, found, _ = nms(boxes, found, points, settings["nms_iou"], settings["weighted_nms"], settings["max_faces"])
    boxes = crop_boxes(boxes, settings.get("crop_margin", 0.0), settings.get("crop_shift", 0.0))
    h, w = settings["input_size"]
    n = int(settings["max_faces"])
    out_boxes = np.zeros((n, 4), np.float32)
    out_scores = np.zeros(n, np.float32)
    k = min(len(boxes), n)
    if k:
        yx = np.stack([boxes[:k, 1] / h, boxes[:k, 0] / w, boxes[:k, 3] / h, boxes[:k, 2] / w], axis=1)
        out_boxes[:k] = np.clip(yx, 0.0, 1.0)
        out_scores[:k] = found[:k]
    return np.array([k], np.float32), out_boxes, out_scores, np.zeros(n, np.float32)


def crop_boxes(boxes, margin, shift):
    """Detections (x1, y1, x2, y2) -> the square crops around them, as fertrt's crop_transform frames them upright."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2 + shift * h
    half = np.maximum(w, h) * (1 + 2 * margin) / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


class TritonPythonModel:
    def initialize(self, args):
        from fertrt.runtime.detectors import blazeface_anchors

        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.settings = json.loads(params["detector"]["string_value"])
        self.detector_model = params.get("detector_model", {}).get("string_value", "face_detector")
        self.anchors = blazeface_anchors(tuple(self.settings["input_size"]), self.settings["anchor_layers"])

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, "input").as_numpy()
            columns, error = [[] for _ in SSD_OUTPUTS], None
            for frame in frames:
                raw, error = self._detect(pb_utils, frame)
                if error:
                    break
                for column, value in zip(columns, ssd_tensors(raw[0], raw[1], self.settings, self.anchors)):
                    column.append(value)
            if error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"face_detector_ssd: {error}")))
            else:
                responses.append(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor(name, np.stack(column)) for name, column in zip(SSD_OUTPUTS, columns)]
                    )
                )
        return responses

    def _detect(self, pb_utils, frame):
        """One frame through the raw detector -> ((regressors, scores), None) or (None, error text)."""
        names = self.settings["outputs"]
        request = pb_utils.InferenceRequest(
            model_name=self.detector_model,
            requested_output_names=list(names),
            inputs=[pb_utils.Tensor(self.settings["input_name"], np.ascontiguousarray(frame[None], np.float32))],
        )
        reply = request.exec()
        if reply.has_error():
            return None, f"{self.detector_model}: {reply.error().message()}"
        return [pb_utils.get_output_tensor_by_name(reply, n).as_numpy()[0] for n in names], None
