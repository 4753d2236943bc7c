"""vitbench harnesses: standardized downstream protocols that consume a :class:`methods.Encoder`."""

__version__ = "0.1.0"
