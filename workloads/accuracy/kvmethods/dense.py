"""Dense attention: every past token (the reference the selections are measured against)."""

from workloads.accuracy.kvmethods._base import KVMethod

METHOD = KVMethod(select=None, label=lambda spec: "")
