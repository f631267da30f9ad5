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
    "Markups": "vtkSlicerMarkupsLogic",  # place mode: SetActiveList + StartPlaceMode on the app's MRML nodes
}


current = None  # the HeadlessSlicer of the running test (slicer.app.applicationLogic() / layoutManager())


class SequencesModule:
    """Follows Slicer ``Modules/Loadable/Sequences/qSlicerSequencesModule.cxx`` in what the modules use:
    ``logic()`` and ``showSequenceBrowser(browser)``, which shows the Sequences toolbar with that browser when
    ``autoShowToolBar`` is on (the default); adding a browser node alone shows nothing."""

    def __init__(self, logic):
        self._logic = logic
        self.autoShowToolBar, self.toolBarVisible, self.toolBarActiveBrowserNode = True, False, None

    def logic(self):
        return self._logic

    def showSequenceBrowser(self, browserNode) -> bool:
        if self.autoShowToolBar:
            self.toolBarActiveBrowserNode = browserNode
            self.toolBarVisible = True
        return True


class LayoutManager:
    """Follows Slicer ``Libs/MRML/Widgets/qMRMLLayoutManager.cxx``: ``layout`` is the scene's layout node's
    view arrangement (kept by a real ``vtkMRMLLayoutLogic``, starting at the conventional layout as Slicer
    does); ``setLayout`` falls back to the conventional layout for an unknown one. Headless: no views."""

    def __init__(self, scene):
        self._logic = slicer.vtkMRMLLayoutLogic()
        self._logic.SetMRMLScene(scene)
        self._logic.GetLayoutNode().SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)

    @property
    def layout(self) -> int:
        return self._logic.GetLayoutNode().GetViewArrangement()

    def setLayout(self, layout: int) -> None:
        node = self._logic.GetLayoutNode()
        if layout == node.GetViewArrangement():
            return
        if not node.IsLayoutDescription(layout):
            layout = slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView
        node.RemoveAllMaximizedViewNodes()
        node.SetViewArrangement(layout)

    def close(self) -> None:
        """Leave the scene before it is cleared (a layout logic still observing it crashes the Clear)."""
        self._logic.SetMRMLScene(None)

    def sliceViewNames(self) -> list:
        return []

    def mrmlSliceLogics(self):
        return vtk.vtkCollection()


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
        if "Sequences" in self.logics:
            modules.sequences = SequencesModule(self.logics["Sequences"])
        self.layoutManager = LayoutManager(self.scene)
        slicer.mrmlScene = self.scene
        slicer.modules = modules
        global current
        current = self

    def close(self):
        global current
        current = None
        self.layoutManager.close()
        self.scene.Clear(True)
        slicer.mrmlScene = None
