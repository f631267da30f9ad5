"""What the engine needs inside Slicer, what is missing, and how to install it without breaking Slicer.

Supported: Slicer 5.10 and newer (Python 3.12); the pins below need Python >= 3.11, so Slicer 5.6 / 5.8
(Python 3.9) get one line saying so instead of a failure inside pip. torch comes from the PyTorch extension
(``PyTorchUtils``: it picks the CUDA build and asks first), at least the version the pinned monai needs; the
engine's other packages through ``slicer.util.pip_install``. Slicer's numpy, SimpleITK and vtk and an
installed torch are never replaced: pip gets a constraints file pinning them at their installed versions.
Checks use ``importlib.util.find_spec``, so nothing heavy is imported in the GUI process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import tempfile

from slicer.i18n import tr as _

SUPPORTED_SLICER = "Slicer 5.10 or newer"
#: import name -> (pip requirement, the oldest Python its wheels support); tested versions, see
#: requirements/constraints.txt
ENGINE_PACKAGES = {
    "monai": ("monai==1.6.1", (3, 10)),
    "safetensors": ("safetensors==0.8.0", (3, 10)),
    "yaml": ("PyYAML==6.0.3", (3, 8)),
    "jsonschema": ("jsonschema==4.26.0", (3, 10)),
    "tqdm": ("tqdm==4.70.1", (3, 8)),
    "scipy": ("scipy==1.17.1", (3, 11)),
    "matplotlib": ("matplotlib==3.11.2", (3, 11)),
    "nibabel": ("nibabel==5.4.2", (3, 10)),
    "einops": ("einops==0.8.2", (3, 9)),
    "skimage": ("scikit-image==0.26.0", (3, 11)),
}
#: the torch the pinned monai needs (monai 1.6.1: ``Requires-Dist: torch>=2.8.0``)
MINIMUM_TORCH = "2.8"
MINIMUM_PYTHON = max(minimum for _requirement, minimum in ENGINE_PACKAGES.values())
#: distributions that must stay at the installed version (Slicer's own, and the PyTorch extension's torch)
KEEP_INSTALLED = ("numpy", "SimpleITK", "vtk", "torch")


class DependencyError(RuntimeError):
    pass


def isAvailable(importName: str) -> bool:
    try:
        return importlib.util.find_spec(importName) is not None
    except (ImportError, ValueError):
        return False


def _checker(available):
    return available if available is not None else isAvailable  # looked up at call time


def unsupportedPython(version=None) -> str:
    """One line when this Python cannot run the pinned engine ('' when it can)."""
    version = tuple(version or sys.version_info[:2])
    if version >= MINIMUM_PYTHON:
        return ""
    needed = ".".join(map(str, MINIMUM_PYTHON))
    return _("DeepMed needs {slicer} (Python {needed}+); this Slicer runs Python {version}. Install a newer "
             "Slicer from download.slicer.org.").format(slicer=SUPPORTED_SLICER, needed=needed,
                                                         version=".".join(map(str, version)))


def requirements(version=None) -> dict[str, str]:
    """import name -> pip requirement valid for this Python (raises DependencyError when none is)."""
    problem = unsupportedPython(version)
    if problem:
        raise DependencyError(problem)
    return {name: requirement for name, (requirement, _minimum) in ENGINE_PACKAGES.items()}


def missingPackages(available=None, version=None) -> list[str]:
    """Pip requirements of the engine's missing packages (torch is reported by ``torchMissing``)."""
    return [req for name, req in requirements(version).items() if not _checker(available)(name)]


def torchMissing(available=None) -> bool:
    return not _checker(available)("torch")


def _versionTuple(text: str) -> tuple:
    parts = []
    for part in text.split("+")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def torchTooOld(version=importlib.metadata.version) -> str:
    """'' or one line: an installed torch older than the pinned monai needs (it is never replaced by pip)."""
    try:
        installed = version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""
    if _versionTuple(installed) >= _versionTuple(MINIMUM_TORCH):
        return ""
    return _("PyTorch {installed} is installed; DeepMed needs {minimum} or newer: in the PyTorch Utils module "
             "uninstall it, restart Slicer, then click 'Install dependencies' here.").format(installed=installed,
                                                                                            minimum=MINIMUM_TORCH)


def describeMissing(available=None, version=None, torchVersion=importlib.metadata.version) -> str:
    """One sentence for the panel: '' when everything is there."""
    problem = unsupportedPython(version) or torchTooOld(torchVersion)
    if problem:
        return problem
    missing = (["PyTorch"] if torchMissing(available) else []) + \
        [r.split("=")[0] for r in missingPackages(available, version)]
    if not missing:
        return ""
    return _("Missing Python packages: {packages}. Click 'Install dependencies' to install them.").format(
        packages=", ".join(missing))


def keepInstalledConstraints(version=importlib.metadata.version) -> list[str]:
    """``name==installed version`` for Slicer's packages and torch, so pip cannot replace them."""
    pins = []
    for name in KEEP_INSTALLED:
        try:
            pins.append(f"{name}=={version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


slicerOwnedConstraints = keepInstalledConstraints  # the former name


def pipArguments(requirements: list[str], constraintsFile: str) -> list[str]:
    """The arguments for ``slicer.util.pip_install`` (a list: file names with spaces stay whole)."""
    return list(requirements) + ["-c", constraintsFile]


def installEngineDependencies(pipInstall, confirm=None, available=None, version=None,
                              installedVersion=importlib.metadata.version) -> list[str]:
    """Install the missing engine packages with Slicer's packages and torch pinned; returns what was installed.

    ``pipInstall``: ``slicer.util.pip_install``; ``confirm(message) -> bool`` asks the user first.
    """
    missing = missingPackages(available, version)
    if not missing:
        return []
    tooOld = torchTooOld(installedVersion)
    if tooOld:
        raise DependencyError(tooOld)
    if confirm is not None and not confirm(_("DeepMed needs these Python packages: {packages}.\nInstall them now? "
                                             "(Slicer's numpy, SimpleITK, vtk and PyTorch stay as they are)").format(
                                               packages=", ".join(missing))):
        raise DependencyError(_("installation declined: {packages}").format(packages=", ".join(missing)))
    handle, constraintsFile = tempfile.mkstemp(prefix="deepmed-constraints-", suffix=".txt")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(keepInstalledConstraints(installedVersion)) + "\n")
        pipInstall(pipArguments(missing, constraintsFile))
    finally:
        os.remove(constraintsFile)
    importlib.invalidate_caches()
    stillMissing = missingPackages(available, version)
    if stillMissing:
        raise DependencyError(_("still missing after installation: {packages}").format(
            packages=", ".join(stillMissing)))
    return missing


def installTorch(executeModule=None, pipInstall=None, confirm=None, available=None) -> bool:
    """Install torch (>= what the pinned monai needs) as the PyTorch extension does, with light-the-torch
    (it picks the CUDA build for this machine's driver), but in a separate ``PythonSlicer`` process and
    without importing torch into Slicer: PyTorchUtils' ``torchInstalled()`` and ``installTorch()`` both
    ``import torch``, and on Windows the loaded DLLs would then block the uninstall ``torchTooOld`` may ask
    for. True when torch is now there; False when the user declined.

    ``executeModule``: ``slicer.util._executePythonModule``; ``pipInstall``: ``slicer.util.pip_install``;
    ``confirm(message) -> bool`` asks the user first."""
    unsupported = unsupportedPython()
    if unsupported:
        raise DependencyError(unsupported)
    if not torchMissing(available):
        return True
    if executeModule is None or pipInstall is None:
        import slicer.util

        executeModule = executeModule or slicer.util._executePythonModule
        pipInstall = pipInstall or slicer.util.pip_install
    arguments = ["install", f"torch>={MINIMUM_TORCH}"]
    if confirm is not None and not confirm(_("PyTorch will be downloaded and installed with light-the-torch "
                                             "(ltt {arguments}); this may take some minutes.").format(
                                               arguments=" ".join(arguments))):
        return False
    if not _checker(available)("light_the_torch"):
        pipInstall("light-the-torch>=0.5")
    executeModule("light_the_torch", arguments)
    importlib.invalidate_caches()
    if torchMissing(available):
        raise DependencyError(_("PyTorch is still missing after light-the-torch ran; see the Python console"))
    return True
