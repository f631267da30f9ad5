"""Show a finished result in Slicer's views (nothing to show headless, where there is no layout manager)."""

from __future__ import annotations

import slicer


def showResult(outputNode, background=None) -> None:
    """A volume or segmentation over its input ``background``, a table in a layout with a table view (as
    Slicer's Segment Statistics shows its table), a sequence's current frame with the Sequences toolbar
    (``showSequenceBrowser``) to play it."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    if outputNode.IsA("vtkMRMLTableNode"):
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(outputNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        return
    if outputNode.IsA("vtkMRMLSequenceNode"):
        from DeepMedLib import ResultNodes

        browser = ResultNodes.sequenceBrowser(outputNode)
        if browser is not None:
            slicer.modules.sequences.showSequenceBrowser(browser)
        outputNode = ResultNodes.proxyVolume(outputNode) or outputNode
        background = None
    if outputNode.IsA("vtkMRMLSegmentationNode"):
        slicer.util.setSliceViewerLayers(background=background, fit=True)
    elif outputNode.IsA("vtkMRMLVolumeNode"):
        slicer.util.setSliceViewerLayers(background=outputNode, foreground=background, foregroundOpacity=0.0,
                                         fit=True)
