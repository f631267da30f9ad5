"""``deepmed export MODEL --format onnx -o OUT``: each network of a voxel-wise model (every fold of an ensemble) as
ONNX, plus ``pipeline.json`` (see :mod:`deepmed.export.pipeline`).

Each file is checked by ``onnx.checker`` and run by onnxruntime against torch before it is kept: spatial axes
are dynamic where the network's output then still matches torch at a second window size, else fixed to the
patch (the sliding window only ever feeds patches); the batch axis is always dynamic. A model whose pipeline
is not the engine's (a MONAI bundle's transforms, a trusted bundle's own code, nnU-Net's inference, whole-image
applications) or whose network cannot be exported is refused in one line naming the model and the reason.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from deepmed import __version__
from deepmed.errors import DeepMedError
from deepmed.export.pipeline import PIPELINE, NetworkFile, OnnxPipeline
from deepmed.model.card import ModelCard

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
#: onnxruntime's output may differ from torch's by float32 rounding only: this much, relative to the output's scale
TOLERANCE = 1e-4

__all__ = ["OPSET", "ExportResult", "check_exportable", "export_onnx"]


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    pipeline: OnnxPipeline
    max_abs_difference: float  # worst |onnxruntime - torch| of a network output on the export's check inputs


def check_exportable(card: ModelCard, application, where: str) -> None:
    """One-line DeepMedError unless the model's inference is the engine's voxel-wise pipeline around a network."""
    from deepmed.applications.dense import DenseApplication

    if card.trust_code or card.trusted_code:
        raise DeepMedError(f"{where}: cannot export to ONNX: the model runs its bundle's own Python code "
                           "(trusted_code), which an ONNX file cannot carry")
    engine_pipeline = (isinstance(application, DenseApplication)
                       and type(application).predict is DenseApplication.predict
                       and type(application).inference_parts is DenseApplication.inference_parts)
    if not engine_pipeline:
        raise DeepMedError(f"{where}: cannot export a '{card.application}' model to ONNX: only models whose "
                           "pipeline is the engine's voxel-wise one (segmentation, regression) export")
    if card.patch_size is None or card.spacing is None or card.network is None:
        raise DeepMedError(f"{where}: cannot export to ONNX: the model card lacks spacing, patch_size or network")


def export_onnx(model_dir: str | Path, out: str | Path, *, opset: int = OPSET, force: bool = False) -> ExportResult:
    """Export the model at ``model_dir`` into the folder ``out`` (refused if it holds files, unless ``force``)."""
    import onnx

    from deepmed.applications import get_application
    from deepmed.inference.predictor import Predictor
    from deepmed.model.directory import read_card

    model_dir, out = Path(model_dir), Path(out)
    card = read_card(model_dir)
    application = get_application(card.application)
    check_exportable(card, application, str(model_dir))
    if out.resolve() == model_dir.resolve():
        raise DeepMedError(f"{out}: is the model directory itself; export into another folder")
    _check_output(out, force)
    predictor = Predictor(model_dir, "cpu")
    patch = list(card.patch_size) if card.array_axes == "xyz" else list(reversed(card.patch_size))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    networks, worst = [], 0.0
    try:
        for fold, member in zip(predictor.folds or [None], predictor.members):
            name = "model.onnx" if fold is None else f"fold_{fold}.onnx"
            dynamic, difference = _export_network(member["model"], len(card.inputs), patch, out / name, opset,
                                                  f"{model_dir} ({name})")
            inputs = card.fold_inputs.get(str(fold), card.inputs) if fold is not None else card.inputs
            networks.append(NetworkFile(name, fold, INPUT_NAME, OUTPUT_NAME, dynamic, tuple(inputs)))
            worst = max(worst, difference)
    except BaseException:  # no half export left behind: the folds written so far go too
        for network in networks:
            (out / network.file).unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    keep = application.keep_largest_labels(card, None) if application.discrete_target else None
    exported = {"engine_version": __version__, "opset": opset, "torch": torch.__version__, "onnx": onnx.__version__,
                "created": datetime.now(UTC).isoformat(timespec="seconds"), "source": model_dir.name}
    pipeline = OnnxPipeline.from_card(card, networks, keep, application.exported_activation,
                                      application.exported_decoding, exported)
    pipeline.write(out)
    return ExportResult(out, pipeline, worst)


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DeepMedError(f"{out}: exists and is not a folder (an ONNX export is a folder)")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DeepMedError(f"{out}: folder exists and is not empty (use --force to overwrite)")
    if out.is_dir() and force:
        for stale in [*out.glob("*.onnx"), out / PIPELINE]:
            stale.unlink(missing_ok=True)


def _export_network(network: torch.nn.Module, channels: int, patch: list[int], path: Path, opset: int,
                    where: str) -> tuple[bool, float]:
    """Write ``network`` to ``path``: (whether its spatial axes are dynamic, max |onnxruntime - torch|)."""
    network = network.eval().float()
    problem = ""
    for dynamic in (True, False):
        try:
            _torch_export(network, torch.zeros(1, channels, *patch), path, opset, dynamic)
            _check_model(path)
            shapes = [[2, channels, *patch]] + ([[1, channels, *_larger(patch)]] if dynamic else [])
            difference, scale = _compare(network, path, shapes)
        except Exception as exc:  # the exporter and onnxruntime raise many types; the first line says which
            problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            continue
        if difference <= TOLERANCE * max(1.0, scale):
            return dynamic, difference
        problem = f"onnxruntime's output differs from torch's by {difference:.3g} (output scale {scale:.3g})"
    path.unlink(missing_ok=True)
    raise DeepMedError(f"{where}: cannot export the network to ONNX ({problem})")


def _torch_export(network: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic: bool) -> None:
    """torch's TorchScript-based exporter (still in torch 2.13; the dynamo one needs onnxscript)."""
    axes = {0: "batch", **({2: "d0", 3: "d1", 4: "d2"} if dynamic else {})}
    with warnings.catch_warnings(), torch.no_grad(), _native_output_silenced():
        warnings.simplefilter("ignore")  # tracer and deprecation notes; the result is checked numerically instead
        torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})


@contextlib.contextmanager
def _native_output_silenced():
    """The exporter's C++ side prints whole graphs (on stdout) when it fails; the one-line error says enough."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "wb") as devnull:
            for fd in saved:
                os.dup2(devnull.fileno(), fd)
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _check_model(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    outputs = onnx.load(str(path), load_external_data=False).graph.output
    if len(outputs) != 1:  # deep-supervision heads would need the engine's choice of the first; refuse instead
        raise ValueError(f"expected one network output, got {len(outputs)}")


def _larger(patch: list[int]) -> list[int]:
    """A second window size to check dynamic axes with: each side grown by the largest power of two (<= 32)
    that divides every side (so that the network's down-sampling still fits)."""
    common = math.gcd(*patch)
    step = min(32, common & -common) if common else 1
    return [side + step for side in patch]


def _compare(network: torch.nn.Module, path: Path, shapes: list[list[int]]) -> tuple[float, float]:
    """Max |onnxruntime - torch| over random inputs of ``shapes``, and the largest |torch output|."""
    from deepmed.export.onnx_runtime import open_session

    session = open_session(path, quiet=True)
    generator = torch.Generator().manual_seed(0)
    difference = scale = 0.0
    for shape in shapes:
        image = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = network(image)
        if isinstance(expected, (list, tuple)):
            expected = expected[0]
        got = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]
        if tuple(got.shape) != tuple(expected.shape):
            raise ValueError(f"onnxruntime gives shape {tuple(got.shape)}, torch {tuple(expected.shape)}")
        difference = max(difference, float((torch.from_numpy(got) - expected.float()).abs().max()))
        scale = max(scale, float(expected.abs().max()))
    return difference, scale
