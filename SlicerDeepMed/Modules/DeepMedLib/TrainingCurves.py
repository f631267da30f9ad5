"""Live training curves as MRML tables and a plot chart (shown in Slicer's plot view)."""

from __future__ import annotations

import math

from slicer.i18n import tr as _

CHART_NAME = "DeepMed training"


class TrainingCurves:
    """A loss table (epoch, loss), a validation table (epoch, metric...) and one chart with every series."""

    def __init__(self, scene, title: str = CHART_NAME):
        self.scene = scene
        self.lossTable = self._table(f"{title} loss", ["epoch", "loss"])
        self.validationTable = None
        self.chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(title))
        self.chart.SetTitle(title)
        self.chart.SetXAxisTitle(_("epoch"))
        self.chart.SetYAxisTitle(_("loss / metric"))
        self._series(self.lossTable, "loss", (0.12, 0.47, 0.71))

    def _table(self, name: str, columns: list[str]):
        table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        for column in columns:
            array = table.AddColumn()
            array.SetName(column)
            table.SetColumnType(column, 11)  # VTK_DOUBLE
        return table

    def _series(self, table, column: str, color):
        series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", self.scene.GenerateUniqueName(column))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("epoch")
        series.SetYColumnName(column)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetColor(*color)
        self.chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return series

    @staticmethod
    def _append(table, values: list[float]):
        row = table.AddEmptyRow()
        for column, value in enumerate(values):
            table.GetTable().SetValue(row, column, float(value))
        table.GetTable().Modified()
        table.Modified()

    def addEpoch(self, epoch: int, loss: float) -> None:
        self._append(self.lossTable, [epoch, loss])

    def addValidation(self, epoch: int, metrics: dict) -> None:
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self.validationTable is None:
            self.columns = sorted(metrics)
            self.validationTable = self._table(f"{self.chart.GetName()} validation", ["epoch"] + self.columns)
            palette = [(0.84, 0.15, 0.16), (0.17, 0.63, 0.17), (0.58, 0.4, 0.74), (1.0, 0.5, 0.05)]
            for index, column in enumerate(self.columns):
                self._series(self.validationTable, column, palette[index % len(palette)])
        self._append(self.validationTable, [epoch] + [metrics.get(c, float("nan")) for c in self.columns])

    def values(self, table) -> list[list[float]]:
        data = table.GetTable()
        return [[data.GetValue(r, c).ToDouble() for c in range(data.GetNumberOfColumns())]
                for r in range(data.GetNumberOfRows())]

    def nodes(self) -> list:
        """Every node this object added: tables, their plot series, the chart."""
        series = [self.chart.GetNthPlotSeriesNode(i) for i in range(self.chart.GetNumberOfPlotSeriesNodes())]
        return [self.lossTable, self.chart] + ([self.validationTable] if self.validationTable else []) + series

    def removeFromScene(self) -> None:
        for node in self.nodes():
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)
