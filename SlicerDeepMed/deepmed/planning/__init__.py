"""Planning rules made from a dataset fingerprint (spacing, patch size, sampling), used by the applications'
``plan``; ``deepmed.training.planner.plan`` assembles them into the saved plan."""
