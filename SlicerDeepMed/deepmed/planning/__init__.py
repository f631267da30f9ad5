"""Planning: the rules made from a dataset fingerprint (spacing, patch size, sampling, network, batch size) that
the applications' ``plan`` uses, and the ``Plan`` itself (``plan.py``), made by ``planner.make_plan`` and saved as
``plan.json``."""
