"""Training: configuration, the driver, the hook-style trainer, checkpoints and progress events."""
