"""`python -m deepmed ...` is the same as the `deepmed` command."""

from deepmed.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
