"""What the engine needs inside Slicer, what is missing, and how to install it without breaking Slicer.

torch comes from the PyTorch extension (``PyTorchUtils``: it picks the right CUDA build and asks first);
the engine's other packages through ``slicer.util.pip_install`` at the versions the project tests with.
Slicer's own numpy, SimpleITK and vtk are never replaced: pip gets a constraints file pinning them.
Checks use ``importlib.util.find_spec``, so nothing heavy is imported in the GUI process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile

MINIMUM_TORCH = "2.2"
#: import name -> pip requirement (the versions the project is tested with; see requirements/constraints.txt)
ENGINE_PACKAGES = {
    "monai": "monai==1.6.1",
    "safetensors": "safetensors==0.8.0",
    "yaml": "PyYAML==6.0.3",
    "jsonschema": "jsonschema==4.26.0",
    "tqdm": "tqdm==4.70.1",
    "scipy": "scipy==1.17.1",
    "matplotlib": "matplotlib==3.11.2",
    "nibabel": "nibabel==5.4.2",
}
#: distributions that belong to Slicer and must stay at the installed version
SLICER_OWNED = ("numpy", "SimpleITK", "vtk")


class DependencyError(RuntimeError):
    pass


def isAvailable(importName: str) -> bool:
    try:
        return importlib.util.find_spec(importName) is not None
    except (ImportError, ValueError):
        return False


def _checker(available):
    return available if available is not None else isAvailable  # looked up at call time


def missingPackages(available=None) -> list[str]:
    """Pip requirements of the engine's missing packages (torch is reported by ``torchMissing``)."""
    return [requirement for name, requirement in ENGINE_PACKAGES.items() if not _checker(available)(name)]


def torchMissing(available=None) -> bool:
    return not _checker(available)("torch")


def describeMissing(available=None) -> str:
    """One sentence for the panel: '' when everything is there."""
    missing = (["PyTorch"] if torchMissing(available) else []) + \
        [r.split("=")[0] for r in missingPackages(available)]
    if not missing:
        return ""
    return f"Missing Python packages: {', '.join(missing)}. Click 'Install dependencies' to install them."


def slicerOwnedConstraints(version=importlib.metadata.version) -> list[str]:
    """``name==installed version`` for Slicer's own packages, so pip cannot replace them."""
    pins = []
    for name in SLICER_OWNED:
        try:
            pins.append(f"{name}=={version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def pipArguments(requirements: list[str], constraintsFile: str) -> list[str]:
    """The arguments for ``slicer.util.pip_install`` (a list: file names with spaces stay whole)."""
    return list(requirements) + ["-c", constraintsFile]


def installEngineDependencies(pipInstall, confirm=None, available=None) -> list[str]:
    """Install the missing engine packages with Slicer's packages pinned; returns what was installed.

    ``pipInstall``: ``slicer.util.pip_install``; ``confirm(message) -> bool`` asks the user first.
    """
    missing = missingPackages(available)
    if not missing:
        return []
    if confirm is not None and not confirm(f"DeepMed needs these Python packages: {', '.join(missing)}.\n"
                                           "Install them now? (Slicer's numpy, SimpleITK and vtk stay as they are)"):
        raise DependencyError("installation declined: " + ", ".join(missing))
    handle, constraintsFile = tempfile.mkstemp(prefix="deepmed-constraints-", suffix=".txt")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(slicerOwnedConstraints()) + "\n")
        pipInstall(pipArguments(missing, constraintsFile))
    finally:
        os.remove(constraintsFile)
    importlib.invalidate_caches()
    stillMissing = missingPackages(available)
    if stillMissing:
        raise DependencyError("still missing after installation: " + ", ".join(stillMissing))
    return missing


def installTorch(torchUtilsModule=None) -> bool:
    """Install torch through the PyTorch extension (it asks the user); True when torch is now there.

    Returns False when the user declined. Raises when the PyTorch extension itself is missing.
    """
    if torchUtilsModule is None:
        try:
            import PyTorchUtils as torchUtilsModule
        except ModuleNotFoundError:
            raise DependencyError("DeepMed needs the 'PyTorch' extension: install it from the Extensions Manager "
                                  "and restart Slicer") from None
    logic = torchUtilsModule.PyTorchUtilsLogic()
    if logic.torchInstalled():
        return True
    return logic.installTorch(askConfirmation=True, torchVersionRequirement=f">={MINIMUM_TORCH}") is not None
