"""Every CPU lever of inference, one row each, on two models: the engine's own (a 42-class 3D U-Net planned as
``bench_large_ct.py`` makes it, on a 512x512xN CT) and an nnU-Net model imported from a result folder nnunetv2
made itself (``nnunet_race_model.py``). Each row runs in its own process (peak RSS is its own: VmHWM) and
predicts the volume once (loading excluded), a compiled network twice: the first run (what one
``deepmed infer`` call pays, compilation included) and the second (steady state). Agreement: identical label
voxels vs the model's baseline row (float32, 2 threads, the engine's defaults otherwise), in % of the input's voxels.

    python benchmarks/bench_cpu_levers.py [--slices 60] [--models engine,nnunet] [--rows ...]
        [--lock /tmp/deepmed-heavy.lock] [--out levers.json]

``--lock``: hold this file's lock (flock) per row group only (per model: the quick rows, then the
``torch.compile`` rows), so other heavy jobs run in between. Weights are
random (speed, memory and label agreement do not depend on them being trained).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
from bench_large_ct import make_large_ct, make_model  # noqa: E402
from heavy_lock import held  # noqa: E402

ROW_TIMEOUT_S = 600


@dataclass(frozen=True)
class Lever:
    """One row: a name, the group it is measured in, and what the child process changes."""

    name: str
    group: str
    threads: int = 2
    interop: int | None = None
    env: dict = field(default_factory=dict)
    precision: str = "float32"  # the engine's option; for nnU-Net a bf16 autocast wrapper around the network
    sw_batch: int | None = None
    channels_last: bool = False
    compile_mode: str | None = None
    onnx: bool = False
    float16_map: bool = False
    mirroring: bool = False


def levers(cores: int) -> list[Lever]:
    rows = [Lever("baseline: float32, 2 threads", "threads"),
            Lever("1 thread", "threads", threads=1),
            *([Lever(f"all cores ({cores} threads)", "threads", threads=cores)] if cores != 2 else []),
            Lever("2 threads, 1 inter-op thread", "threads", interop=1),
            Lever("2 threads, OMP_WAIT_POLICY=PASSIVE", "threads", env={"OMP_WAIT_POLICY": "PASSIVE"}),
            Lever("2 threads, OMP_WAIT_POLICY=ACTIVE", "threads", env={"OMP_WAIT_POLICY": "ACTIVE"}),
            Lever("sliding-window batch 1", "batch", sw_batch=1),
            Lever("sliding-window batch 4", "batch", sw_batch=4),
            Lever("channels-last 3D (network and input)", "layout", channels_last=True),
            Lever("activation map kept in float16", "layout", float16_map=True),
            Lever("bf16 autocast", "precision", precision="bfloat16"),
            Lever("bf16 autocast + channels-last 3D", "precision", precision="bfloat16", channels_last=True),
            Lever("engine default (precision auto)", "precision", precision="auto"),
            Lever("onnxruntime, 2 threads", "onnx", onnx=True),
            Lever("onnxruntime, 1 thread", "onnx", onnx=True, threads=1),
            Lever("torch.compile (default)", "compile", compile_mode="default"),
            Lever("torch.compile (max-autotune-no-cudagraphs)", "compile", compile_mode="max-autotune-no-cudagraphs")]
    return rows


CHILD = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
import torch
torch.set_num_threads(spec["threads"])
if spec["interop"]:
    torch.set_num_interop_threads(spec["interop"])
from deepmed.inference.predictor import Predictor
from deepmed.io.image_io import write_image
from deepmed.volume_inference import sliding
if spec["float16_map"]:
    sliding.FLOAT32_ACTIVATION_BYTES = 0


class Lever(torch.nn.Module):
    def __init__(self, network, channels_last, bf16):
        super().__init__()
        self.network, self.channels_last, self.bf16 = network, channels_last, bf16

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.network(x).float()
        return self.network(x)


start = time.perf_counter()
predictor = Predictor(spec["model"], "cpu")
load = time.perf_counter() - start
if spec["sw_batch"]:
    predictor.card.inference["sw_batch_size"] = spec["sw_batch"]
nnunet = predictor.card.application == "nnunet"
for member in predictor.members:
    for key, network in list(member.items()):
        if spec["onnx_file"]:  # an nnU-Net network exported here (the engine's own export refuses nnU-Net models)
            from deepmed.export.onnx_runtime import open_session
            class Session(torch.nn.Module):
                def __init__(self, session):
                    super().__init__()
                    self.session = session
                def forward(self, x):
                    out = self.session.run(None, {"image": x.float().contiguous().numpy()})[0]
                    return torch.from_numpy(out)
            member[key] = Session(open_session(spec["onnx_file"], spec["threads"]))
            continue
        if not isinstance(network, torch.nn.Module) or spec["onnx"]:
            continue
        if spec["channels_last"]:
            network = network.to(memory_format=torch.channels_last_3d)
        if spec["channels_last"] or (nnunet and spec["precision"] == "bfloat16"):
            network = Lever(network, spec["channels_last"], nnunet and spec["precision"] == "bfloat16")
        if spec["compile_mode"]:
            network = torch.compile(network, mode=spec["compile_mode"], dynamic=False)
        member[key] = network.eval()
options = {"tta_flips": spec["mirroring"]}
if not nnunet and not spec["onnx"]:
    options["precision"] = spec["precision"]
times = []
for _ in range(2 if spec["compile_mode"] else 1):  # a compiled network: the second run is the steady state
    start = time.perf_counter()
    result = predictor.predict([spec["image"]], **options)
    times.append(time.perf_counter() - start)
write_image(result.output, spec["out"], label=True)
hwm = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"load_s": load, "first_s": times[0], "steady_s": times[-1], "peak_rss_mb": hwm}))
"""




def run_row(lever: Lever, model: Path, image: Path, out: Path, onnx_model: Path | None,
            onnx_file: Path | None) -> dict:
    spec = {"model": str(onnx_model if lever.onnx and onnx_model else model), "image": str(image), "out": str(out),
            "threads": lever.threads, "interop": lever.interop, "precision": lever.precision,
            "sw_batch": lever.sw_batch, "channels_last": lever.channels_last, "compile_mode": lever.compile_mode,
            "onnx": lever.onnx, "onnx_file": str(onnx_file) if lever.onnx and onnx_file else None,
            "float16_map": lever.float16_map, "mirroring": lever.mirroring}
    env = dict(os.environ)
    if env.pop("DEEPMED_CHOSE_OMP_WAIT_POLICY", None) is not None:  # deepmed's choice here, not the user's:
        env.pop("OMP_WAIT_POLICY", None)  # each row's process chooses for itself (deepmed/utils/openmp.py)
    env.update({"OMP_NUM_THREADS": str(lever.threads), **lever.env})
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                              env=env, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"over {ROW_TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": (lines or [f"exit {done.returncode}"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def not_applicable(lever: Lever, model_kind: str, bf16_native: bool) -> str | None:
    """Why ``lever`` is not measured on this model or machine (None: it is)."""
    if lever.precision == "bfloat16" and not bf16_native:
        return "not supported here (no native bf16: measuring emulation would mislead)"
    if model_kind == "nnunet" and (lever.sw_batch or lever.float16_map):
        return "n/a: nnU-Net's path tiles one at a time and accumulates float16 logits, as nnU-Net does"
    if model_kind == "nnunet" and lever.precision == "auto":
        return "n/a: nnU-Net's path runs float32 on the CPU, as nnU-Net does"
    return None


def cpu_description() -> dict:
    from deepmed.volume_inference.sliding import cpu_supports_bf16

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    memory = next((int(line.split()[1]) // 2**20 for line in meminfo if line.startswith("MemTotal")), 0)
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": memory,
            "bf16_flags": [f for f in flags if re.fullmatch(r"avx512_bf16|amx_bf16", f)],
            "bf16_native": cpu_supports_bf16()}


def export_nnunet_network(model: Path, patch: list[int], path: Path) -> Path:
    """The imported nnU-Net network as ONNX at its patch size (deepmed's export refuses nnU-Net models, whose
    pipeline is nnU-Net's own; the network alone is what onnxruntime would replace)."""
    import torch

    from deepmed.inference.predictor import Predictor

    network = Predictor(model, "cpu").networks["model"]
    dummy = torch.zeros((1, 1, *patch))
    torch.onnx.export(network, (dummy,), str(path), input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamo=False)
    return path


def prepare(kind: str, root: Path, slices: int, classes: int) -> dict:
    """The model folder (and its ONNX form) and input of one model kind."""
    image = root / "ct.nii.gz"
    if not image.exists():
        make_large_ct(image, slices)
    if kind == "engine":
        from deepmed.workflows.onnx_export import export_onnx

        model = root / "engine_model"
        if not (model / "model_card.json").is_file():
            make_model(model, classes)
        if not (root / "engine_onnx" / "pipeline.json").is_file():
            export_onnx(model, root / "engine_onnx", force=True)
        return {"model": model, "image": image, "onnx_model": root / "engine_onnx", "onnx_file": None}
    from nnunet_race_model import make_nnunet_result_folder

    from deepmed.zoo.nnunet_convert import convert

    result = make_nnunet_result_folder(root / "nnunet_work")
    model = root / "nnunet_model"
    card_file = model / "model_card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else convert(result, model, str(result))
    onnx_file = root / "nnunet.onnx"
    if not onnx_file.is_file():
        export_nnunet_network(model, list(card["task"]["patch_size"]), onnx_file)
    return {"model": model, "image": image, "onnx_model": None, "onnx_file": onnx_file}


def agreement(reference: Path, path: Path) -> float:
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (reference, path))
    return float(np.mean(a == b)) if a.shape == b.shape else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=60, help="the CT's slices (512 x 512 x N)")
    parser.add_argument("--classes", type=int, default=42, help="the engine model's classes")
    parser.add_argument("--models", default="engine,nnunet")
    parser.add_argument("--rows", help="only the rows whose name contains one of these (separated by semicolons); "
                                       "the baseline always runs")
    parser.add_argument("--lock", type=Path, help="hold this lock per row group (flock)")
    parser.add_argument("--one-hold", action="store_true", help="hold the lock once per model (all its rows)")
    parser.add_argument("--work", type=Path, help="keep models and outputs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    machine = cpu_description()
    print(json.dumps(machine), flush=True)
    wanted = [w.strip() for w in args.rows.split(";")] if args.rows else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for kind in args.models.split(","):
            root = work / kind
            root.mkdir(parents=True, exist_ok=True)
            baseline_out = None
            groups: dict[str, list[Lever]] = {}  # one lock hold for the quick rows, one for compilation
            for lever in levers(os.cpu_count() or 1):
                if lever.name.startswith("baseline") or not wanted or any(w in lever.name for w in wanted):
                    slow = lever.compile_mode and not args.one_hold
                    groups.setdefault("compile" if slow else "quick", []).append(lever)
            for name, group in groups.items():
                with held(args.lock):
                    if name == "quick":
                        prepared = prepare(kind, root, args.slices, args.classes)
                    for index, lever in enumerate(group):
                        row = {"model": kind, "lever": lever.name}
                        reason = not_applicable(lever, kind, machine["bf16_native"])
                        if reason or (lever.onnx and not (prepared["onnx_model"] or prepared["onnx_file"])):
                            row["note"] = reason or "no ONNX form"
                        else:
                            out = root / f"{name}_{index}.nii.gz"
                            row.update(run_row(lever, prepared["model"], prepared["image"], out,
                                               prepared["onnx_model"], prepared["onnx_file"]))
                            if "error" not in row:
                                baseline_out = baseline_out or out
                                row["identical_labels"] = agreement(baseline_out, out)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    print_table(rows, machine, args.slices)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "slices": args.slices, "rows": rows}, indent=2) + "\n")


def print_table(rows: list[dict], machine: dict, slices: int) -> None:
    print(f"\n{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; 512x512x{slices} CT")
    print("| model | lever | first run, s | steady, s/volume | peak RSS, MB | identical labels vs baseline |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "first_s" in row:
            print(f"| {row['model']} | {row['lever']} | {row['first_s']:.1f} | {row['steady_s']:.1f} | "
                  f"{row['peak_rss_mb']:,.0f} | {100 * row['identical_labels']:.3f}% |")
        else:
            print(f"| {row['model']} | {row['lever']} | | | | {row.get('note') or row.get('error')} |")


if __name__ == "__main__":
    main()
