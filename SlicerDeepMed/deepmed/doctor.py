"""``deepmed doctor``: is this Python ready for the engine? Packages, devices and a tiny training step.

Every check is tried on its own, so a missing or broken package becomes a problem with a fix, never a
traceback. Example:
    >>> report = run_checks("cpu")                       # doctest: +SKIP
    >>> report["check"]["ok"], report["problems"]        # doctest: +SKIP
    (True, [])
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

#: The engine's dependencies as in pyproject.toml (a test keeps the two equal): dist -> (module, specifier).
REQUIREMENTS = {
    "torch": ("torch", ">=2.2"),
    "monai": ("monai", ">=1.4,<1.7"),
    "SimpleITK": ("SimpleITK", ">=2.2"),
    "numpy": ("numpy", ">=1.24"),
    "scipy": ("scipy", ">=1.10"),
    "safetensors": ("safetensors", ">=0.4"),
    "pyyaml": ("yaml", ">=6.0"),
    "jsonschema": ("jsonschema", ">=4.17"),
    "tqdm": ("tqdm", ">=4.64"),
    "matplotlib": ("matplotlib", ">=3.7"),
    "nibabel": ("nibabel", ">=5.0"),
    "einops": ("einops", ">=0.7"),
    "scikit-image": ("skimage", ">=0.21"),
}
SLICER_TORCH_FIX = "install PyTorch with the PyTorch extension (Slicer > PyTorch Utils)"


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``; pre-release tails are ignored."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def satisfies(version: str, specifier: str) -> bool:
    """``version`` meets every ``>=``, ``>``, ``<=``, ``<``, ``==``, ``!=`` clause of ``specifier``."""
    have = version_tuple(version)
    ops = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
           "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        op = next(o for o in (">=", "<=", "==", "!=", ">", "<") if clause.startswith(o))
        want = version_tuple(clause[len(op):])
        width = max(len(have), len(want))
        if not ops[op](have + (0,) * (width - len(have)), want + (0,) * (width - len(want))):
            return False
    return True


def in_slicer() -> bool:
    """Inside 3D Slicer: its application object is loaded, or this is its PythonSlicer (a worker). The PyPI
    ``slicer-core`` package has a ``slicer`` module without ``app``: that is not Slicer."""
    return hasattr(sys.modules.get("slicer"), "app") or (Path(sys.executable).parent / "PythonSlicer").exists()


def _fix(dist: str, specifier: str) -> str:
    if dist == "torch" and in_slicer():
        return SLICER_TORCH_FIX
    return f"pip install '{dist}{specifier}'"


def _packages(problems: list[dict]) -> tuple[dict, dict]:
    versions, modules = {}, {}
    for dist, (module_name, specifier) in REQUIREMENTS.items():
        try:
            modules[dist] = importlib.import_module(module_name)
        except Exception as exc:
            versions[dist] = None
            missing = isinstance(exc, ImportError) and getattr(exc, "name", None) == module_name
            reason = "is not installed" if missing else f"fails to import ({type(exc).__name__}: {exc})"
            problems.append({"what": f"{dist} {reason}", "fix": _fix(dist, specifier)})
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = str(getattr(modules[dist], "__version__", "unknown"))
        if versions[dist] != "unknown" and not satisfies(versions[dist], specifier):
            problems.append({"what": f"{dist} {versions[dist]} does not meet deepmed's {dist}{specifier}",
                             "fix": _fix(dist, specifier)})
    torch_needed = _monai_torch_requirement() if versions.get("monai") else None
    if torch_needed and versions.get("torch") and not satisfies(versions["torch"], torch_needed):
        problems.append({"what": f"monai {versions['monai']} needs torch{torch_needed}, found {versions['torch']}",
                         "fix": _fix("torch", torch_needed)})
    return versions, modules


def _monai_torch_requirement() -> str | None:
    """MONAI's own torch requirement from its metadata (e.g. ``>=2.8.0``), if readable."""
    try:
        requires = metadata.requires("monai") or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        match = re.match(r"torch\s*([<>=!][^;]*)$", line.strip())
        if match:
            return match.group(1).replace(" ", "")
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _devices(torch) -> list[dict]:
    devices: list[dict] = [{"type": "cpu", "name": _cpu_name()}]
    if torch is None:
        return devices
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            entry = {"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index)}
            try:
                free, total = torch.cuda.mem_get_info(index)
                entry.update(free_memory_gb=round(free / 2**30, 1), total_memory_gb=round(total / 2**30, 1))
            except Exception:
                entry.update(free_memory_gb=None, total_memory_gb=None)
            devices.append(entry)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append({"type": "mps"})
    return devices


def _tiny_check(device: str, devices: list[dict], modules: dict, problems: list[dict]) -> dict:
    kinds = {d["type"] for d in devices}
    if device == "auto":
        device = "cuda" if "cuda" in kinds else "mps" if "mps" in kinds else "cpu"
    check = {"device": device, "ok": False, "seconds": None, "message": ""}
    if "torch" not in modules or "monai" not in modules:
        check["message"] = "skipped: torch and monai are needed"
        return check
    if device not in kinds:
        check["message"] = f"device {device} is not available"
        fix = ("install a CUDA build of PyTorch and an NVIDIA driver, or use --device cpu"
               if device == "cuda" else "use --device cpu (Apple MPS needs a Mac with Apple silicon)")
        problems.append({"what": f"device {device} requested, but it is not available", "fix": fix})
        return check
    torch = modules["torch"]
    try:
        from monai.networks.nets import UNet

        start = time.perf_counter()
        net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2)).to(device)
        net(torch.randn(1, 1, 32, 32, 32, device=device)).mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        check.update(ok=True, seconds=round(time.perf_counter() - start, 3),
                     message=f"forward/backward of a small 3D UNet on {device}: ok")
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        check["message"] = f"forward/backward of a small 3D UNet on {device} failed: {first}"
        problems.append({"what": check["message"],
                         "fix": "install a PyTorch build that matches this device and driver, or use --device cpu"})
    return check


def run_checks(device: str = "auto") -> dict:
    """Versions, devices and a one-step training check on ``device`` (auto, cpu, cuda, mps), as a dict."""
    problems: list[dict] = []
    versions, modules = _packages(problems)
    torch = modules.get("torch")
    devices = _devices(torch)
    check = _tiny_check(device, devices, modules, problems)
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None), "devices": devices,
            "check": check, "problems": problems}


def format_report(report: dict) -> str:
    """A few aligned lines for people."""
    rows = [("python", f"{report['python']} on {report['platform']}")]
    rows += [(name, version or "MISSING") for name, version in report["packages"].items()]
    rows.append(("torch cuda", report["torch_cuda"] or "none (CPU build)"))
    for d in report["devices"]:
        memory = f", {d['free_memory_gb']} of {d['total_memory_gb']} GB free" if d.get("total_memory_gb") else ""
        label = d["type"] if "index" not in d else f"{d['type']}:{d['index']}"
        rows.append(("device", f"{label} {d.get('name', '')}{memory}".rstrip()))
    check = report["check"]
    seconds = f" ({check['seconds']} s)" if check["seconds"] is not None else ""
    rows.append(("check", f"{check['message']}{seconds}"))
    lines = [f"{key:12s} {value}" for key, value in rows]
    for problem in report["problems"]:
        lines.append(f"PROBLEM      {problem['what']}\n  fix:       {problem['fix']}")
    lines.append("ready" if not report["problems"] else f"{len(report['problems'])} problem(s)")
    return "\n".join(lines)
