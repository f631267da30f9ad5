"""Run an ONNX export with onnxruntime (CPU provider) in place of the torch networks: each network becomes a
module whose forward is one session call, so the sliding window, ensembles, flips and everything around them
stay the engine's own (the Predictor swaps only the network call)."""

from __future__ import annotations

from pathlib import Path

import torch

from deepmed.errors import DeepMedError
from deepmed.export.pipeline import NetworkFile, OnnxPipeline

__all__ = ["OnnxNetwork", "export_device", "onnx_members", "open_session"]


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise DeepMedError("running an ONNX export needs onnxruntime: pip install 'deepmed[export]'") from None
    return onnxruntime


def open_session(path: Path, threads: int | None = None, quiet: bool = False):
    """An onnxruntime CPU session of ``path`` using ``threads`` intra-op threads (default: torch's count);
    ``quiet``: onnxruntime logs nothing (a trial run whose failure is expected and reported otherwise)."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if quiet:
        options.log_severity_level = 4
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for damaged or unsupported files
        raise DeepMedError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})") from None


class OnnxNetwork(torch.nn.Module):
    """A network whose forward runs an onnxruntime session: float32 (N, C, *spatial) in, its output out, on the
    input's device."""

    def __init__(self, session, network: NetworkFile):
        super().__init__()
        self.session = session
        self.input_name = network.input_name
        self.output_name = network.output_name

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        output = self.session.run([self.output_name], {self.input_name: array})[0]
        return torch.from_numpy(output).to(image.device)


def onnx_members(pipeline: OnnxPipeline, folder: Path, folds: list[int] | None) -> list[dict]:
    """The ensemble members (``{"model": OnnxNetwork}``) of the networks for ``folds`` (None: the single one)."""
    by_fold = {network.fold: network for network in pipeline.networks}
    members = []
    for fold in folds or [None]:
        network = by_fold[fold]
        members.append({"model": OnnxNetwork(open_session(Path(folder) / network.file), network).eval()})
    return members


def export_device(name: str, folder: Path) -> torch.device:
    """An export runs on the CPU (onnxruntime's CPU provider): ``auto`` and ``cpu`` mean it; a GPU is refused."""
    if name not in ("auto", "cpu"):
        raise DeepMedError(f"{folder}: an ONNX export runs on the CPU with onnxruntime; got --device {name} "
                           "(use the model directory itself for a GPU)")
    return torch.device("cpu")
