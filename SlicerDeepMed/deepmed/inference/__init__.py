"""Running a model directory: the Predictor reads the card, picks the application, checks the inputs and
predicts one case or a batch; results land on each input's exact grid. The per-volume tools the applications use
live below, in :mod:`deepmed.volume_inference`."""
