"""``python -m streams`` is the ``inferloop`` command."""

from streams.cli import main

main()
