"""*Check installation*: ``deepmed doctor --json`` in a worker (the GUI process never imports torch) and
its report as a few lines for the panel.

The report (engine side): ``python``, ``packages`` (torch, monai, SimpleITK, numpy), ``torch_cuda``,
``devices`` (cpu / cuda with name and free memory / mps), ``check`` (a tiny forward/backward pass on the
chosen device) and ``problems`` (``what`` + ``fix``).
"""

from __future__ import annotations

from slicer.i18n import tr as _

from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.JobHandle import JobHandle
from DeepMedLib.Signal import Signal


class InstallCheck(JobHandle):
    """``check = InstallCheck().start("auto")``; ``finished(report or None, text)`` once the worker ended;
    ``wait()`` gives the report."""

    def __init__(self, runner: EngineRunner | None = None):
        super().__init__()
        self.runner = runner or EngineRunner()
        self.report = None
        self.finished = Signal("object", "str")

    def start(self, device: str = "auto") -> InstallCheck:
        self.attach(self.runner.job("installation check", "doctor", "--device", device, "--json"))
        self.job.start()
        return self

    def waitValue(self):
        return self.report

    def _onJobFinished(self, result) -> None:
        self.report = self.job.outputJson() if result.status in ("succeeded", "failed") else None
        if isinstance(self.report, dict) and "packages" in self.report:
            text = formatReport(self.report)
        elif result.status == "cancelled":
            self.report, text = None, _("Installation check cancelled.")
        else:
            self.report = None
            message = result.errorMessage.splitlines()[0] if result.errorMessage else _("no report")
            text = _("The installation check could not run: {error}").format(error=message)
        self.finished.emit(self.report, text)


def _gigabytes(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "?"


def describeDevice(device: dict) -> str:
    kind = device.get("type", "?")
    if kind == "cuda":
        return _("CUDA {index}: {name} ({free} of {total} GB free)").format(
            index=device.get("index", 0), name=device.get("name", "?"), free=_gigabytes(device.get("free_memory_gb")),
            total=_gigabytes(device.get("total_memory_gb")))
    if kind == "mps":
        return f"Apple MPS ({device.get('name', 'GPU')})"
    return f"CPU ({device['name']})" if device.get("name") else "CPU"


def formatReport(report: dict) -> str:
    """A short report: versions, devices, the test pass, then each problem with what to do."""
    packages = report.get("packages", {})
    torch = packages.get("torch")
    missing = _("missing")
    build = "CUDA " + report["torch_cuda"] if report.get("torch_cuda") else "CPU"
    torchText = _("torch {version} ({build} build)").format(version=torch, build=build) if torch else \
        _("torch missing")
    lines = [f"Python {report.get('python', '?')}, {torchText}, MONAI {packages.get('monai') or missing}, "
             f"SimpleITK {packages.get('SimpleITK') or missing}"]
    devices = report.get("devices", [])
    lines.append(_("Devices: {devices}").format(
        devices="; ".join(describeDevice(d) for d in devices) if devices else _("none found")))
    check = report.get("check") or {}
    if check:
        outcome = _("OK in {seconds} s").format(seconds=f"{check.get('seconds', 0):.2f}") if check.get("ok") else \
            _("FAILED: {error}").format(error=check.get("message", ""))
        lines.append(_("Test pass on {device} (forward + backward): {outcome}").format(
            device=check.get("device", "?"), outcome=outcome))
    problems = report.get("problems", [])
    if problems:
        lines += [_("Problem: {what} -> {fix}").format(what=p.get("what", ""), fix=p.get("fix", "")) for p in problems]
    else:
        lines.append(_("Everything DeepMed needs is installed and working."))
    return "\n".join(lines)
