"""The ``deepmed`` command line: one sub-module per command, each with ``add_parser`` and ``run``."""
