"""What a trained model is on disk, shared by training, inference and the zoo (none of which import each other):
the model directory format, weights I/O and the choice of device."""
