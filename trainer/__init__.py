"""inferloop's offline trainer, on the core library (:mod:`inferloop`), never on the streaming apps.

The data's journey: :mod:`.data` and :mod:`.training_log` (labelled examples in) → :mod:`.train` (fit a
:mod:`.model`) → :mod:`.export` (an ONNX artifact, parity-checked with :mod:`.onnx_inference`) →
:mod:`.evaluate` (holdouts and the gate) → :mod:`.publish` (into the Triton model :mod:`.repository`, with its
:mod:`.card`). :mod:`.jobs` runs these steps as bootstrap, retrain, the trigger loop and rollback.
"""
