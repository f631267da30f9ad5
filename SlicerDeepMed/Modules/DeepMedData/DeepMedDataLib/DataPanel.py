"""The DeepMed Data panel: cases from scene nodes or a folder, a table with each case's status from
``dataset check``, a train/validation/test split, export as manifest + NIfTI files."""

from __future__ import annotations

import os
import re

import slicer
from slicer.i18n import tr as _

from DeepMedDataLib.DataLogic import SceneCase
from DeepMedLib import DatasetSelection
from DeepMedLib.PanelHelpers import clearLayout, configureNodeSelector, pollTimer, setBusy, volumeSelector


def shortProblem(problem: str) -> str:
    """'case c2: /long/path/c2_seg.nii.gz: cannot read' -> 'c2_seg.nii.gz: cannot read' (for the table)."""
    return re.sub(r"\S*[/\\]", "", problem.split(": ", 1)[-1])


class DataPanel:
    def __init__(self, ui, logic, scene):
        import ctk
        import qt

        self.ui, self.logic, self.scene = ui, logic, scene
        self.sceneCases: list[SceneCase] = []
        self.folderDataset = None   # a deepmed Dataset from a folder scan or a manifest
        self.statuses: dict[str, str] = {}
        self.manifestPath = None
        self.checkRun = None
        self.volumeSelectors = []
        self.parameterNode = None
        self.timer = pollTimer(self.poll)
        self.volumesLayout = qt.QFormLayout(ui.volumesFrame)
        # Folders: a folder dialog, no name filters (CTK would make them a validator no folder passes).
        ui.folderPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        ui.exportFolderLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        ui.manifestPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable
        ui.manifestPathLineEdit.nameFilters = [_("Dataset manifests") + " (*.json *.csv)"]
        configureNodeSelector(ui.labelSelector, scene, ["vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode"],
                              noneDisplay=_("(no label: test case)"))
        ui.casesTable.setHorizontalHeaderLabels([_("Case"), _("Images"), _("Label"), _("Status")])
        ui.casesTable.horizontalHeader().stretchLastSection = True
        ui.channelNamesLineEdit.editingFinished.connect(self.buildVolumeSelectors)
        ui.addCaseButton.clicked.connect(self.onAddCase)
        ui.addPoolCaseButton.clicked.connect(self.onAddPoolCase)
        ui.addFolderPoolButton.clicked.connect(self.onAddFolderPool)
        ui.removeCaseButton.clicked.connect(self.onRemoveCase)
        ui.casesTable.itemSelectionChanged.connect(self.updateButtons)
        ui.scanFolderButton.clicked.connect(self.onScanFolder)
        ui.loadManifestButton.clicked.connect(self.onLoadManifest)
        ui.exportButton.clicked.connect(self.onExport)
        ui.exportFolderLineEdit.currentPathChanged.connect(self.updateButtons)
        ui.exportFolderLineEdit.validInputChanged.connect(self.updateButtons)
        self.buildVolumeSelectors()
        self.refreshTable()

    # ---- life cycle (DeepMedModuleWidget) -------------------------------------------------------
    def setParameterNode(self, parameterNode):
        self.parameterNode = parameterNode
        if parameterNode is not None and len(self.volumeSelectors) != len(self.channelNames()):
            self.buildVolumeSelectors()

    def enter(self):
        self.updateButtons()

    def onSceneClosing(self):
        """File > Close Scene: cases made of scene nodes go with it (a folder dataset stays)."""
        if self.sceneCases:
            self.sceneCases = []
            self.statuses = {}
            self.refreshTable()
            self.ui.statusLabel.text = _("The scene was closed: its cases were removed.")

    def cleanup(self):
        """Slicer exits: a running dataset check is cancelled."""
        self.timer.stop()
        if self.checkRun is not None:
            self.checkRun.job.cancel()

    # ---- cases from the scene ---------------------------------------------------------------------
    def channelNames(self) -> list[str]:
        return [name.strip() for name in self.ui.channelNamesLineEdit.text.split(",") if name.strip()] or ["image"]

    def buildVolumeSelectors(self):
        clearLayout(self.volumesLayout)
        self.volumeSelectors = []
        for channel in self.channelNames():
            selector = volumeSelector(self.scene, ["vtkMRMLScalarVolumeNode"],
                                      _("The {channel} volume of this case").format(channel=channel))
            self.volumesLayout.addRow(f"{channel}:", selector)
            self.volumeSelectors.append(selector)

    def onAddCase(self):
        with slicer.util.tryWithErrorDisplay(_("Could not add the case.")):
            volumes = [s.currentNode() for s in self.volumeSelectors]
            caseId = self.ui.caseIdLineEdit.text.strip() or f"case{len(self.sceneCases) + 1:03d}"
            case = SceneCase(caseId, volumes, self.ui.labelSelector.currentNode())
            problems = self.logic.sceneProblems(self.sceneCases + [case], self.channelNames())
            if problems:
                raise ValueError("\n".join(problems))
            self.folderDataset = None
            self.sceneCases.append(case)
            self.statuses.pop(caseId, None)
            self.ui.caseIdLineEdit.text = ""
            self.refreshTable()
            self.ui.statusLabel.text = _("{count} case(s) from the scene.").format(count=len(self.sceneCases))

    def onAddPoolCase(self):
        """The selected volumes as an unlabelled case: into the loaded (or exported) manifest's pool, written at
        once; else into the scene cases (exported with them)."""
        with slicer.util.tryWithErrorDisplay(_("Could not add the case to the pool."), waitCursor=True):
            volumes = [s.currentNode() for s in self.volumeSelectors]
            caseId = self.ui.caseIdLineEdit.text.strip() or self._nextPoolId()
            case = SceneCase(caseId, volumes, None, pool=True)
            if self.manifestPath:
                added = self.logic.addScenePool(self.manifestPath, [case])
                self._reloadManifest(_("Added {cases} to the pool of {manifest}.").format(
                    cases=", ".join(added), manifest=self.manifestPath))
            else:
                problems = self.logic.sceneProblems(self.sceneCases + [case], self.channelNames())
                if problems:
                    raise ValueError("\n".join(problems))
                self.sceneCases.append(case)
                self.refreshTable()
                self.ui.statusLabel.text = _("{count} case(s) from the scene.").format(count=len(self.sceneCases))
            self.ui.caseIdLineEdit.text = ""

    def _nextPoolId(self) -> str:
        taken = {row[0] for row in self.rows()}
        return next(f"pool{n:03d}" for n in range(1, len(taken) + 2) if f"pool{n:03d}" not in taken)

    def onAddFolderPool(self):
        with slicer.util.tryWithErrorDisplay(_("Could not add the folder to the pool."), waitCursor=True):
            if not self.manifestPath:
                raise ValueError(_("Load (or export) a dataset manifest first: the pool is part of it."))
            patterns = [p.strip() for p in self.ui.imagePatternsLineEdit.text.split(",") if p.strip()]
            added, warnings = self.logic.addFolderPool(self.manifestPath, self.ui.folderPathLineEdit.currentPath,
                                                       patterns)
            self._reloadManifest(_("Added {count} unlabelled case(s) to the pool ({skipped} skipped).").format(
                count=len(added), skipped=len(warnings)))

    def _reloadManifest(self, status: str):
        self._useDataset(self.logic.loadManifest(self.manifestPath), self.manifestPath)
        self.ui.statusLabel.text = status

    def onRemoveCase(self):
        rows = sorted({index.row() for index in self.ui.casesTable.selectedIndexes()}, reverse=True)
        for row in rows:
            if self.folderDataset is None:
                del self.sceneCases[row]
        self.refreshTable()

    # ---- cases from folders ---------------------------------------------------------------------
    def onScanFolder(self):
        with slicer.util.tryWithErrorDisplay(_("Could not scan the folder."), waitCursor=True):
            patterns = [p.strip() for p in self.ui.imagePatternsLineEdit.text.split(",") if p.strip()]
            names = self.channelNames() if patterns and len(self.channelNames()) == len(patterns) else None
            dataset, warnings = self.logic.scanFolder(self.ui.folderPathLineEdit.currentPath, patterns,
                                                      self.ui.labelPatternLineEdit.text.strip(), names)
            self._useDataset(dataset, None)
            note = " " + _("{count} warning(s): {warning}").format(count=len(warnings), warning=warnings[0]) \
                if warnings else ""
            self.ui.statusLabel.text = _("Found {labelled} case(s) with labels, {unlabelled} without.").format(
                labelled=len(dataset.training), unlabelled=len(dataset.test)) + note

    def onLoadManifest(self):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the dataset."), waitCursor=True):
                path = self.ui.manifestPathLineEdit.currentPath
                self._useDataset(self.logic.loadManifest(path), path)
                self.ui.statusLabel.text = _("Loaded {path}: checking every case...").format(path=path)
                self.startCheck(path)
        finally:
            self.updateButtons()

    def _useDataset(self, dataset, manifestPath):
        self.folderDataset, self.manifestPath, self.sceneCases, self.statuses = dataset, manifestPath, [], {}
        self.refreshTable()

    # ---- the table ------------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, str]]:
        pool = _("pool (unlabelled)")
        if self.folderDataset is not None:
            cases = self.folderDataset.training + self.folderDataset.test
            return [(c.id, ", ".join(os.path.basename(str(p)) for p in c.images),
                     os.path.basename(str(c.label)) if c.label else "") for c in cases] + \
                [(c.id, ", ".join(os.path.basename(str(p)) for p in c.images), pool) for c in self.folderDataset.pool]
        return [(c.id, ", ".join(v.GetName() for v in c.volumes),
                 pool if c.pool else c.labelNode.GetName() if c.labelNode else "") for c in self.sceneCases]

    def refreshTable(self):
        import qt

        table = self.ui.casesTable
        rows = self.rows()
        table.rowCount = len(rows)
        for row, (caseId, images, label) in enumerate(rows):
            for column, text in enumerate((caseId, images, label or _("(none)"), self.statuses.get(caseId, ""))):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(text)
                table.setItem(row, column, item)
        self.updateButtons()

    def updateButtons(self, *args):
        ui = self.ui
        hasCases = bool(self.rows())
        hasFolder = bool(ui.exportFolderLineEdit.currentPath.strip())
        ui.exportButton.enabled = hasCases and hasFolder and self.checkRun is None
        ui.removeCaseButton.enabled = self.folderDataset is None and bool(ui.casesTable.selectedIndexes())
        ui.addFolderPoolButton.enabled = bool(self.manifestPath)

    # ---- export, split, check -----------------------------------------------------------------------
    def onExport(self):
        ui = self.ui
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not export the dataset."), waitCursor=True):
                folder = ui.exportFolderLineEdit.currentPath
                name = ui.datasetNameLineEdit.text.strip() or "dataset"
                if self.folderDataset is not None:
                    self.folderDataset.name = name
                    os.makedirs(folder, exist_ok=True)
                    manifest = self.logic.saveManifest(self.folderDataset, os.path.join(folder, "dataset.json"))
                else:
                    manifest = self.logic.exportSceneDataset(self.sceneCases, folder, name, self.channelNames())
                self.manifestPath = str(manifest)
                fractions = [ui.trainPercentSpinBox.value, ui.valPercentSpinBox.value, ui.testPercentSpinBox.value]
                split = {}
                poolCases = len(self.folderDataset.pool) if self.folderDataset is not None else \
                    sum(case.pool for case in self.sceneCases)
                if sum(fractions) > 0 and len(self.rows()) - poolCases >= 3:  # the pool is never split
                    split = self.logic.split(manifest, [f / sum(fractions) for f in fractions])
                sizes = ", ".join(f"{part} {len(ids)}" for part, ids in split.items())
                ui.statusLabel.text = (_("Wrote {manifest} (split: {sizes}); checking...") if sizes else
                                       _("Wrote {manifest}; checking...")).format(manifest=manifest, sizes=sizes)
                self.startCheck(manifest)
        finally:
            self.updateButtons()

    def startCheck(self, manifest):
        self.checkRun = self.logic.check(manifest)
        self.checkRun.job.finished.connect(self.onCheckFinished)
        setBusy(self.ui.progressBar, True)
        self.timer.start()
        self.updateButtons()

    def poll(self):
        if self.checkRun is not None:
            self.checkRun.poll()

    def onCheckFinished(self, result):
        report = self.checkRun.report or {}
        self.checkRun = None
        self.timer.stop()
        setBusy(self.ui.progressBar, False, 100)
        self.statuses = {row["id"]: (_("OK") if not row["problems"] else shortProblem(row["problems"][0]))
                         for row in report.get("cases", [])}
        self.refreshTable()
        problems = report.get("problems", [])
        prefix = f"{self.manifestPath}: " if self.manifestPath else ""
        self.ui.statusLabel.text = prefix + (_("all cases OK; ready to train in DeepMed Train.") if not problems else
                                             _("{count} problem(s): {problem}").format(count=len(problems),
                                                                                       problem=problems[0]))
        if not problems and self.manifestPath:
            DatasetSelection.datasetReady.emit(str(self.manifestPath))
