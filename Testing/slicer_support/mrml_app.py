"""A headless Slicer "application" on PyPI slicer-core: a real MRML scene with the module logics.

What ``slicer.app`` would normally set up (``../shared/SLICER_HEADLESS.md``): the application logic with
default colour nodes, and the module logics that ``slicer.util`` functions look up. As in Slicer
(``Base/QTCore/qSlicerModuleFactoryManager.cxx``), the application logic knows each logic by its module's
name ("Volumes", "Colors", ...: the C++ logics look each other up that way) and ``slicer.modules`` by the
lower-case name.

The frame conversions the DeepMed result placement relies on are slicer-core's real ones, no stand-ins:
``vtkSlicerVolumesLogic.CreateAndAddLabelVolume`` (copies the volume's parent transform) and
``vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode`` (converts a label map from its frame
into the segmentation's); ``Testing/mrml/test_input_frames.py`` pins both down.
"""

import types

import slicer
import vtk

#: module name -> logic class (the Colors module's logic is the application's colour logic)
MODULE_LOGICS = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Plots": "vtkSlicerPlotsLogic",
    "Data": "vtkSlicerDataModuleLogic",
    "Transforms": "vtkSlicerTransformLogic",
    "Sequences": "vtkSlicerSequencesLogic",
}


class HeadlessSlicer:
    """Owns one scene and its logics; ``close()`` clears ``slicer.mrmlScene`` again."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.appLogic = slicer.vtkSlicerApplicationLogic()
        self.appLogic.SetMRMLScene(self.scene)
        # the app's colour logic is the Colors module's (Modules/Loadable/Colors/qSlicerColorsModule.cxx); its
        # vtkSlicerColorLogic subclass wants the application's home folder, the MRML base class does not
        colorLogic = self.appLogic.GetColorLogic()
        colorLogic.SetMRMLScene(self.scene)
        colorLogic.AddDefaultColorNodes()
        self.appLogic.SetSliceLogics(vtk.vtkCollection())
        self.appLogic.SetViewLogics(vtk.vtkCollection())
        self.logics = {"Colors": colorLogic}
        self.appLogic.SetModuleLogic("Colors", colorLogic)
        modules = types.SimpleNamespace(colors=types.SimpleNamespace(logic=lambda: colorLogic))
        for name, className in MODULE_LOGICS.items():
            if not hasattr(slicer, className):
                continue
            logic = getattr(slicer, className)()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.appLogic)
            self.appLogic.SetModuleLogic(name, logic)
            self.logics[name] = logic
            setattr(modules, name.lower(), types.SimpleNamespace(logic=lambda logic=logic: logic))
        slicer.mrmlScene = self.scene
        slicer.modules = modules

    def close(self):
        self.scene.Clear(True)
        slicer.mrmlScene = None
