"""``inferloop``: the command line, the product's front door (see :mod:`cli.app` for its conventions).

Every command module is imported to register its commands, and none imports anything heavy at module level: a
command needing an extra checks it (:func:`cli.extras.require`) and imports what it runs inside its function. So
``inferloop --help`` and the light client's commands (produce, predictions, feedback, dlq, topics) run on the core
install, and the others say which extra to install.
"""

from cli import demo_commands, model_commands, stack_commands, stream_app_commands, stream_commands
from cli.app import app

# each registers its commands when imported (`inferloop --help` lists them in the order of the import above)
COMMAND_MODULES = (stack_commands, model_commands, stream_app_commands, stream_commands, demo_commands)


def main() -> None:
    """Entry point of the ``inferloop`` console script."""
    app()
