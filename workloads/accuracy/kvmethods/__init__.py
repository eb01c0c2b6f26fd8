"""One module per KV-selection method; each defines ``METHOD`` (a :class:`~._base.KVMethod`).

A module here is a method: ``workloads.accuracy.specs.kv_method_names`` lists them without importing
them (so the configuration validates ``kv.method`` without torch), and ``kvselect.kv_method`` loads
one by name. Adding a method means adding a module (and its tests).
"""
