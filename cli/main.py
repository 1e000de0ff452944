"""``inferloop``: the command line, the product's front door (see :mod:`cli.app` for its conventions)."""

from cli import demo_commands, model_commands, stack_commands, stream_commands
from cli.app import app

COMMAND_MODULES = (stack_commands, model_commands, stream_commands, demo_commands)  # each registers its commands


def main() -> None:
    """Entry point of the ``inferloop`` console script."""
    app()
