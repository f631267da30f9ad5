"""Tools that run a network over a volume (sliding window, test-time flips) and bring results back onto an
input grid; used by the applications, know no task."""
