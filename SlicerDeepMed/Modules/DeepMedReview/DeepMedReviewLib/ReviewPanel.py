"""The DeepMed Review panel: dataset and model, Rank pool, the ranked cases (case, score, status), Accept / Skip
for the loaded case, and Improve model in the background with old vs new per label once it ends."""

from __future__ import annotations

from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _

from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError
from DeepMedLib import DatasetSelection, ModelLibrary
from DeepMedLib.PanelHelpers import pollTimer, setBusy
from DeepMedReviewLib.Ranking import ACCEPTED, PENDING, SKIPPED


def caseColumns() -> list:
    return ["#", _("Case"), _("Score"), _("Status")]


def comparisonColumns() -> list:
    return [_("Label"), _("Old"), _("New")]


def statusText(status: str) -> str:
    """The shown (translated) text of a case's review status."""
    return {PENDING: _("pending"), ACCEPTED: _("accepted"), SKIPPED: _("skipped")}.get(status, status)


def _score(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def modelTitle(model) -> str:
    """'Boxes (boxes@2, 2 versions)': the name the library resolves and the promoted version it runs."""
    versions = getattr(model, "versions", ())
    if len(versions) < 2:
        return f"{model.title} ({model.id})"
    return _("{title} ({id}@{version}, {count} versions)").format(title=model.title, id=model.id,
                                                                    version=model.version, count=len(versions))


class ReviewPanel:
    def __init__(self, ui, logic, scene):
        import ctk

        self.ui, self.logic, self.scene = ui, logic, scene
        self.parameterNode = None
        self.models = []
        self.ranking = []             # RankedCase rows in rank order
        self.statuses = {}            # case id -> pending / accepted / skipped
        self.loaded = None            # the LoadedCase in the scene
        self.rankRun = self.improveRun = None
        self.rankSkipped = []
        self.comparison = None
        self.timer = pollTimer(self.poll)
        ui.manifestPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable
        ui.manifestPathLineEdit.nameFilters = []
        ui.reviewFolderLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self._setUpTable(ui.casesTable, caseColumns())
        self._setUpTable(ui.comparisonTable, comparisonColumns())
        ui.comparisonTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)
        ui.manifestPathLineEdit.currentPathChanged.connect(self.onManifestChanged)
        ui.reviewFolderLineEdit.currentPathChanged.connect(self.onReviewFolderChanged)
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.refreshModelsButton.clicked.connect(self.refreshModels)
        ui.rankButton.clicked.connect(self.onRank)
        ui.openRankingButton.clicked.connect(self.onOpenRanking)
        ui.cancelRankButton.clicked.connect(self.onCancelRank)
        ui.casesTable.itemSelectionChanged.connect(self.onCaseSelected)
        ui.acceptButton.clicked.connect(self.onAccept)
        ui.skipButton.clicked.connect(self.onSkip)
        ui.improveButton.clicked.connect(self.onImprove)
        ui.cancelImproveButton.clicked.connect(self.onCancelImprove)
        ModelLibrary.changed.connect(self.onLibraryChanged)
        DatasetSelection.datasetReady.connect(self.onDatasetReady)
        self.refreshModels()

    @staticmethod
    def _setUpTable(table, columns) -> None:
        table.columnCount = len(columns)
        table.setHorizontalHeaderLabels(list(columns))
        table.verticalHeader().visible = False
        table.horizontalHeader().stretchLastSection = True

    # ---- life cycle (DeepMedModuleWidget) -------------------------------------------------------
    def setParameterNode(self, parameterNode):
        self.parameterNode = None  # restoring writes nothing back
        if parameterNode is not None:
            if parameterNode.manifestPath and parameterNode.manifestPath != self.manifestPath():
                self.ui.manifestPathLineEdit.currentPath = parameterNode.manifestPath
            if parameterNode.reviewFolder and parameterNode.reviewFolder != self.ui.reviewFolderLineEdit.currentPath:
                self.ui.reviewFolderLineEdit.currentPath = parameterNode.reviewFolder
            if parameterNode.model and parameterNode.model != self.currentModelId():
                self.refreshModels(selectId=parameterNode.model)
        self.parameterNode = parameterNode
        self.updateButtons()

    def enter(self):
        self.refreshModels()

    def onSceneClosing(self):
        """The loaded case goes with the scene; a ranking or an improvement goes on (they write files only)."""
        self.loaded = None
        self.updateButtons()

    def cleanup(self):
        """Slicer exits: a running ranking or improvement is cancelled (the promoted version stays)."""
        ModelLibrary.changed.disconnect(self.onLibraryChanged)
        DatasetSelection.datasetReady.disconnect(self.onDatasetReady)
        for run in (self.rankRun, self.improveRun):
            if run is not None:
                run.cancel()
        self.timer.stop()

    # ---- dataset, review folder, model ------------------------------------------------------------
    def manifestPath(self) -> str:
        return self.ui.manifestPathLineEdit.currentPath or ""

    def reviewFolder(self) -> str:
        """The chosen review folder, else ``review/`` beside the manifest."""
        chosen = self.ui.reviewFolderLineEdit.currentPath
        if chosen:
            return chosen
        return str(Path(self.manifestPath()).parent / "review") if self.manifestPath() else ""

    def onDatasetReady(self, manifestPath: str):
        """A dataset exported or loaded in DeepMed Data is offered here when none is chosen yet."""
        if not self.manifestPath():
            self.ui.manifestPathLineEdit.currentPath = manifestPath

    def onManifestChanged(self, *args):
        if self.parameterNode is not None:
            self.parameterNode.manifestPath = self.manifestPath()
        self.updateButtons()

    def onReviewFolderChanged(self, *args):
        if self.parameterNode is not None:
            self.parameterNode.reviewFolder = self.ui.reviewFolderLineEdit.currentPath or ""
        self.updateButtons()

    def refreshModels(self, selectId: str | None = None):
        """The library's segmentation models, each under the name that resolves to its promoted version."""
        current = selectId or self.currentModelId()
        self.models = [m for m in ModelLibrary.models() if m.output_kind == "label_map"]
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for model in self.models:
            combo.addItem(modelTitle(model))
        ids = [m.id for m in self.models]
        combo.currentIndex = ids.index(current) if current in ids else (0 if ids else -1)
        combo.blockSignals(False)
        self.onModelChanged()

    def onLibraryChanged(self, path: str):
        self.refreshModels()

    def currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def currentModelId(self):
        model = self.currentModel()
        return model.id if model is not None else None

    def onModelChanged(self, *args):
        if self.parameterNode is not None and self.currentModelId():
            self.parameterNode.model = self.currentModelId()
        self.updateButtons()

    # ---- rank the pool ----------------------------------------------------------------------------
    def onRank(self):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not rank the pool."), waitCursor=True):
                self.rankRun = self.logic.rank(self.manifestPath(), self.currentModel(), self.reviewFolder(),
                                               strategy=self.ui.strategyComboBox.currentText,
                                               device=self.ui.deviceComboBox.currentText)
                self.rankSkipped = []  # pool cases the engine could not read (left out of the ranking)
                self.rankRun.job.eventReceived.connect(self.onRankEvent)
                self.rankRun.job.finished.connect(self.onRankFinished)
                setBusy(self.ui.progressBar, True)
                self.ui.statusLabel.text = _("Predicting the pool with {model}...").format(model=self.currentModelId())
                self.timer.start()
        finally:
            self.updateButtons()

    def onRankEvent(self, event: dict):
        if event["event"] == "inference" and event.get("skipped"):
            self.rankSkipped.append(f"{event['case']} ({event['skipped']})")
        total, index = event.get("total"), event.get("index", event.get("done"))
        if isinstance(total, int) and total > 0 and isinstance(index, int):
            setBusy(self.ui.progressBar, False, int(100 * min(index + (event["event"] == "inference"), total) / total))
            if event.get("case"):
                self.ui.statusLabel.text = _("Predicted {case} ({index} of {total})").format(
                    case=event["case"], index=min(index + 1, total), total=total)

    def onRankFinished(self, result):
        run, self.rankRun = self.rankRun, None
        self._stopTimerWhenIdle()
        setBusy(self.ui.progressBar, False, 100 if result.succeeded else 0)
        if run.ranking is not None:
            self.showRanking(run.ranking)
            if self.rankSkipped:
                self.ui.statusLabel.text += " " + _("Left out (unreadable): {cases}").format(
                    cases="; ".join(self.rankSkipped))
        elif result.status == "cancelled":
            self.ui.statusLabel.text = _("Ranking cancelled.")
        else:
            self.ui.statusLabel.text = _("Ranking failed: {error}").format(error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("Ranking the pool failed:\n{error}").format(error=result.errorMessage))
        self.updateButtons()

    def onOpenRanking(self):
        with slicer.util.tryWithErrorDisplay(_("Could not open the ranking.")):
            self.showRanking(self.logic.readRanking(self.reviewFolder()))

    def onCancelRank(self):
        if self.rankRun is not None:
            self.rankRun.cancel()

    def showRanking(self, ranking):
        """Fill the table; a case no longer in the dataset's pool was accepted already (in this or an earlier
        session)."""
        self.ranking = list(ranking)
        pool = {case.id for case in Dataset.load(self.manifestPath()).pool}
        self.statuses = {row.case: self.statuses.get(row.case, PENDING) if row.case in pool else ACCEPTED
                         for row in self.ranking}
        table = self.ui.casesTable
        table.blockSignals(True)
        table.rowCount = len(self.ranking)
        for index, row in enumerate(self.ranking):
            texts = (str(row.rank), row.case, _score(row.score), statusText(self.statuses[row.case]))
            for column, text in enumerate(texts):
                table.setItem(index, column, qt.QTableWidgetItem(text))
        table.blockSignals(False)
        table.resizeColumnsToContents()
        pending = sum(status == PENDING for status in self.statuses.values())
        self.ui.statusLabel.text = _("{count} cases ranked, {pending} to review.").format(count=len(self.ranking),
                                                                                          pending=pending)
        self.updateButtons()

    # ---- review: load, Accept, Skip ---------------------------------------------------------------
    def selectedRow(self) -> int:
        rows = sorted({index.row() for index in self.ui.casesTable.selectedIndexes()})
        return rows[0] if rows else -1

    def onCaseSelected(self):
        index = self.selectedRow()
        if not 0 <= index < len(self.ranking):
            return
        ranked = self.ranking[index]
        if self.loaded is not None and self.loaded.ranked.case == ranked.case:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                labels = self.labelsOf(ranked)
                if self.loaded is not None:
                    self.logic.removeCase(self.loaded)
                    self.loaded = None
                self.loaded = self.logic.loadCase(self.manifestPath(), ranked, self.scene, labels)
                self.ui.caseLabel.text = _(
                    "{case}: rank {rank}, uncertainty {score}, proposed by {model}. Correct the segmentation "
                    "'{segmentation}' in the Segment Editor, then Accept.").format(
                    case=ranked.case, rank=ranked.rank, score=_score(ranked.score), model=ranked.proposedBy,
                    segmentation=self.loaded.segmentation.GetName())
        finally:
            self.updateButtons()

    def labelsOf(self, ranked):
        """The segment names and colours of the model that made the prediction (the ranking says which), else of
        the chosen model."""
        try:
            return ModelLibrary.findModel(ranked.proposedBy).card.label_dicts()
        except (ValueError, DeepMedError):  # no longer in the library
            model = self.currentModel()
            return model.card.label_dicts() if model is not None else []

    def setStatus(self, case: str, status: str) -> None:
        self.statuses[case] = status
        row = [r.case for r in self.ranking].index(case)
        self.ui.casesTable.setItem(row, 3, qt.QTableWidgetItem(statusText(status)))

    def selectNextPending(self) -> None:
        """The next case still to review, after the current one (wrapping around)."""
        current = max(self.selectedRow(), 0)
        order = list(range(current + 1, len(self.ranking))) + list(range(0, current + 1))
        following = next((i for i in order if self.statuses[self.ranking[i].case] == PENDING), None)
        if following is not None:
            self.ui.casesTable.selectRow(following)

    def onAccept(self):
        loaded = self.loaded
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not save the label."), waitCursor=True):
                corrected = loaded.correctedByHand()
                path = self.logic.accept(self.manifestPath(), loaded)
                self.setStatus(loaded.ranked.case, ACCEPTED)
                self.ui.statusLabel.text = _("Accepted {case} ({how}): {path}").format(
                    case=loaded.ranked.case, path=path,
                    how=_("corrected by hand") if corrected else _("as proposed"))
                self.selectNextPending()
        finally:
            self.updateButtons()

    def onSkip(self):
        if self.loaded is not None:
            self.setStatus(self.loaded.ranked.case, SKIPPED)
            self.ui.statusLabel.text = _("Skipped {case}; it stays unlabelled.").format(case=self.loaded.ranked.case)
            self.selectNextPending()
        self.updateButtons()

    # ---- improve ----------------------------------------------------------------------------------
    def onImprove(self):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not start the improvement."), waitCursor=True):
                minutes = self.ui.improveMinutesSpinBox.value
                self.improveRun = self.logic.improve(self.manifestPath(), self.currentModel(), seconds=60.0 * minutes,
                                                     tolerance=self.ui.improveToleranceSpinBox.value,
                                                     device=self.ui.deviceComboBox.currentText)
                self.improveRun.job.eventReceived.connect(self.onImproveEvent)
                self.improveRun.job.finished.connect(self.onImproveFinished)
                self.ui.comparisonTable.rowCount = 0
                self.ui.improveResultLabel.text = _("Fine-tuning {model} for {minutes:g} min; keep reviewing "
                                                    "meanwhile.").format(model=self.currentModelId(), minutes=minutes)
                setBusy(self.ui.improveProgressBar, True)
                self.timer.start()
        finally:
            self.updateButtons()

    def onImproveEvent(self, event: dict):
        elapsed, budget = event.get("elapsed_s"), event.get("time_limit_s")
        if event["event"] == "started" and budget:
            self.improveBudget = float(budget)
        budget = getattr(self, "improveBudget", None)
        if isinstance(elapsed, (int, float)) and budget:
            setBusy(self.ui.improveProgressBar, False, int(min(100, 100 * elapsed / budget)))
        if event["event"] == "improve":
            self.ui.improveResultLabel.text = _(
                "Fine-tuning {model}@{new} from version {old} on {count} cases; {held} held-out case(s) judge it. "
                "Keep reviewing meanwhile.").format(model=event["model"], new=event["new_version"],
                                                    old=event["old_version"], count=event["train_cases"],
                                                    held=len(event["held_out"]))
        elif event["event"] == "finished":
            self.ui.improveResultLabel.text = _("Comparing old and new on the held-out cases...")

    def onImproveFinished(self, result):
        run, self.improveRun = self.improveRun, None
        self._stopTimerWhenIdle()
        setBusy(self.ui.improveProgressBar, False, 100 if result.succeeded else 0)
        if run.comparison is not None:
            self.showComparison(run.comparison)
        elif result.status == "cancelled":
            self.ui.improveResultLabel.text = _("Improvement cancelled; the model is unchanged.")
        else:
            self.ui.improveResultLabel.text = _("Improvement failed: {error}").format(
                error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("Improving the model failed:\n{error}").format(error=result.errorMessage))
        self.updateButtons()

    def showComparison(self, comparison):
        self.comparison = comparison
        table = self.ui.comparisonTable
        rows = [(s.label, s.old, s.new) for s in comparison.labels] + [(_("mean"), comparison.oldMean,
                                                                         comparison.newMean)]
        table.rowCount = len(rows)
        for index, (name, old, new) in enumerate(rows):
            for column, text in enumerate((name, _score(old), _score(new))):
                table.setItem(index, column, qt.QTableWidgetItem(text))
        if comparison.promoted:
            text = _("Promoted {new}: not worse than {old} on {count} held-out cases; Run uses it now.")
        else:
            text = _("Kept {old}: {new} was worse on {count} held-out cases (kept in the library, not promoted).")
        self.ui.improveResultLabel.text = text.format(new=comparison.newModel, old=comparison.oldModel,
                                                      count=len(comparison.heldOut)) + (
            f" {comparison.reason}" if comparison.reason else "")

    def onCancelImprove(self):
        if self.improveRun is not None:
            self.improveRun.cancel()

    # ---- buttons and the timer ----------------------------------------------------------------------
    def poll(self):
        for run in (self.rankRun, self.improveRun):
            if run is not None:
                run.poll()

    def _stopTimerWhenIdle(self):
        if self.rankRun is None and self.improveRun is None:
            self.timer.stop()

    def updateButtons(self, *args):
        ui = self.ui
        ready = bool(self.manifestPath()) and self.currentModel() is not None
        ui.rankButton.enabled = ready and self.rankRun is None
        ui.openRankingButton.enabled = bool(self.reviewFolder()) and self.rankRun is None
        ui.cancelRankButton.enabled = self.rankRun is not None
        reviewing = self.loaded is not None and self.statuses.get(self.loaded.ranked.case) == PENDING
        ui.acceptButton.enabled = ui.skipButton.enabled = reviewing
        ui.improveButton.enabled = ready and self.improveRun is None
        ui.cancelImproveButton.enabled = self.improveRun is not None
        ui.modelComboBox.enabled = self.rankRun is None and self.improveRun is None
