"""The top layer: entry points. ``inferloop`` (:mod:`cli.main`), its commands grouped by what they act on
(:mod:`.stack_commands`, :mod:`.model_commands`, :mod:`.stream_app_commands`, :mod:`.stream_commands`,
:mod:`.demo_commands`), the extra each heavy command needs (:mod:`.extras`), and what only the command line runs:
the demo (:mod:`.demo`) and the bench (:mod:`.bench`). Commands parse, call one function, and print: tables on
stdout, progress and logs on stderr."""
