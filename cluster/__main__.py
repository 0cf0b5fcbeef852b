"""``python -m cluster``: the same as the ``sticky-cluster`` command."""
from .cli import main

main()
