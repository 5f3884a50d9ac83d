"""Deployment: a checkpoint's inference graph as an ONNX file, and predictions from that file.

``sarb export`` writes the plain branch of the model (backbone, CSRL, GGNN, head, sigmoid: images
in, probabilities out) with ``torch.onnx.export``, a dynamic batch size, and what a deployment
needs to feed it as metadata: ``class_names`` (JSON list, the columns of the output),
``image_size`` (the square side) and ``mean`` / ``std`` (JSON lists: the per-channel
normalisation of RGB values scaled to [0, 1]). ``sarb predict --model`` runs the file with ONNX
Runtime through the same decoding and test transform as a checkpoint, so the two agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from sarb.api import ImagePredictor, load_model
from sarb.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sarb.errors import SarbError
from sarb.files import atomic_write, first_line

ONNX_MISSING = "ONNX export and prediction need the optional packages: pip install 'sarb[onnx]'"
INPUT, OUTPUT = "images", "probabilities"
METADATA_KEYS = ("class_names", "image_size", "mean", "std")


class _Probabilities(nn.Module):
    """The exported graph: images (B, 3, S, S), normalised -> class probabilities (B, C)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images))


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the inference graph of ``checkpoint`` (a ``.pt`` file or a run directory) to
    ``out`` as ONNX, with a dynamic batch size and the metadata of this module's docstring."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx.export's translator)
    except ImportError:
        raise SarbError(ONNX_MISSING) from None
    predictor = load_model(checkpoint, device="cpu")
    size = predictor.image_size
    example = torch.zeros(2, 3, size, size)  # 2: a batch of 1 would be specialised
    try:
        program = torch.onnx.export(
            _Probabilities(predictor.model).eval(),
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    except Exception as exc:  # an operator or a shape the exporter cannot take
        raise SarbError(
            f"{predictor.checkpoint}: cannot export the {predictor.config.backbone} model to"
            f" ONNX ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    program.model.metadata_props.update(
        {
            "class_names": json.dumps(predictor.class_names),
            "image_size": str(size),
            "mean": json.dumps(list(IMAGENET_MEAN)),
            "std": json.dumps(list(IMAGENET_STD)),
            "method": str(predictor.config.method),
            "backbone": predictor.config.backbone,
        }
    )
    return atomic_write(out, program.model_proto.SerializeToString(), fsync=False)


class OnnxPredictor(ImagePredictor):
    """An exported model run by ONNX Runtime on the CPU: :meth:`predict`, :meth:`predict_paths`
    and :meth:`labels_of` as :class:`sarb.api.Predictor` has them; ``path`` is the file."""

    def __init__(self, path: str | os.PathLike):
        try:
            import onnxruntime
        except ImportError:
            raise SarbError(ONNX_MISSING) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise SarbError(f"{self.path}: no such ONNX model file")
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # not a protobuf, an unknown operator...
            raise SarbError(f"{self.path}: not an ONNX model ({first_line(exc)})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in METADATA_KEYS if key not in meta]
        if missing:
            raise SarbError(
                f"{self.path}: not a model written by sarb export (no {', '.join(missing)}"
                " metadata)"
            )
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [INPUT]:
            raise SarbError(f"{self.path}: not a model written by sarb export (inputs {inputs})")
        normalisation = (json.loads(meta["mean"]), json.loads(meta["std"]))
        if normalisation != (list(IMAGENET_MEAN), list(IMAGENET_STD)):
            raise SarbError(f"{self.path}: its mean/std are not the ImageNet ones sarb feeds")
        self.class_names = list(json.loads(meta["class_names"]))
        self.image_size = int(meta["image_size"])

    def __repr__(self) -> str:
        return f"OnnxPredictor({str(self.path)!r}, classes={len(self.class_names)})"

    def _scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, C) of a preprocessed batch, from ONNX Runtime."""
        (probs,) = self.session.run([OUTPUT], {INPUT: batch.numpy()})
        return torch.from_numpy(probs)


__all__ = ["ONNX_MISSING", "OnnxPredictor", "export_onnx"]
