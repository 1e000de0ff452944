"""The feedback joiner: :mod:`.feedback_join` decides each case (pure), :mod:`.join_step` does a batch's I/O,
:mod:`.lookups` reads images back and model labels, :mod:`.join_agent` is its Faust app."""
