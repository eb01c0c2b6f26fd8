"""One module per quantisation method; each defines ``METHOD`` (a :class:`~._base.QuantMethod`).

A module here is a method: ``workloads.accuracy.specs.quant_method_names`` lists them without importing them (so
the configuration validates ``quant.method`` without torch), and ``emulation.quant_method`` loads one by name.
Adding a method means adding a module (and its tests).
"""
