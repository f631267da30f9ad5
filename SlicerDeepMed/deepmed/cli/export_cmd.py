"""``deepmed export MODEL --format onnx -o OUT [--check IMAGE ...]``: a deployable copy of a model's network(s)."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("onnx",)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a model's network(s) as ONNX plus its pipeline (JSON)")
    parser.add_argument("model", help="model directory, or the id of a model in the library")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="export format (default: onnx)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="export folder (ONNX files + pipeline.json)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 17)")
    parser.add_argument("--check", nargs="+", type=Path, metavar="IMAGE",
                        help="one case's images (one per channel): compare the export's output with the model's")
    parser.add_argument("--force", action="store_true", help="overwrite an existing export folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.workflows.onnx_export import OPSET, export_onnx
    from deepmed.zoo.library import resolve_model

    model_dir = resolve_model(args.model)
    result = export_onnx(model_dir, args.output, opset=args.opset or OPSET, force=args.force)
    for network in result.pipeline.networks:
        axes = "dynamic spatial axes" if network.dynamic_spatial_axes else "fixed to the patch"
        print(f"{args.output / network.file}: {axes}")
    print(f"{args.output / 'pipeline.json'}: max |onnxruntime - torch| on random windows "
          f"{result.max_abs_difference:.2g}")
    if args.check:
        from deepmed.workflows.onnx_parity import compare_export

        parity = compare_export(model_dir, args.output, args.check)
        print(parity.summary())
    return 0
