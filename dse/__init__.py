"""TIDE design-space exploration application (``python -m dse``)."""

__version__ = "0.1.0"
