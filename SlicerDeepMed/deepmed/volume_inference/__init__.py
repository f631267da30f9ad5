"""Running a network over one volume (sliding window, test-time flips, ensembles in bounded memory) and bringing
the result back onto the input's grid: the building blocks the applications predict with. They know no task and
no model directory.

Separate from :mod:`deepmed.inference` on purpose: that package runs a *model directory* (card, application,
checks, batches) and sits above the applications; this one sits below them, so the two cannot be one package
without an import cycle."""
