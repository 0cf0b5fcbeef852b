"""``python -m cluster``: the same as the ``sticky-cluster`` command."""
from .cli.cli import main

main()
