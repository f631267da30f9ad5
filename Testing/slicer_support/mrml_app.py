"""A headless Slicer "application" on PyPI slicer-core: a real MRML scene with the module logics.

What ``slicer.app`` would normally set up (``../shared/SLICER_HEADLESS.md``): the application logic with
default colour nodes, and the module logics that ``slicer.util`` functions look up.
"""

import types

import slicer
import vtk

MODULE_LOGICS = {
    "volumes": "vtkSlicerVolumesLogic",
    "segmentations": "vtkSlicerSegmentationsModuleLogic",
    "subjecthierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "tables": "vtkSlicerTablesLogic",
    "plots": "vtkSlicerPlotsLogic",
    "data": "vtkSlicerDataModuleLogic",
    "transforms": "vtkSlicerTransformLogic",
    "sequences": "vtkSlicerSequencesLogic",
}


class HeadlessSlicer:
    """Owns one scene and its logics; ``close()`` clears ``slicer.mrmlScene`` again."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.appLogic = slicer.vtkSlicerApplicationLogic()
        self.appLogic.SetMRMLScene(self.scene)
        colorLogic = self.appLogic.GetColorLogic()
        colorLogic.SetMRMLScene(self.scene)
        colorLogic.AddDefaultColorNodes()
        self.appLogic.SetSliceLogics(vtk.vtkCollection())
        self.appLogic.SetViewLogics(vtk.vtkCollection())
        self.logics = {}
        modules = types.SimpleNamespace()
        for name, className in MODULE_LOGICS.items():
            if not hasattr(slicer, className):
                continue
            logic = getattr(slicer, className)()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.appLogic)
            self.appLogic.SetModuleLogic(name, logic)
            self.logics[name] = logic
            setattr(modules, name, types.SimpleNamespace(logic=lambda logic=logic: logic))
        slicer.mrmlScene = self.scene
        slicer.modules = modules

    def close(self):
        self.scene.Clear(True)
        slicer.mrmlScene = None
