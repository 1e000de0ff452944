"""inferloop's streaming side: settings, event schemas, the Triton client and the Faust app."""

__version__ = "0.1.0"
