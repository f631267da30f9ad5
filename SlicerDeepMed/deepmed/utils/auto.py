"""``auto``: the configuration value that leaves a decision to the plan (one constant for config and planner)."""

AUTO = "auto"
