"""``python -m cli`` is the ``inferloop`` command."""

from cli.main import main

main()
