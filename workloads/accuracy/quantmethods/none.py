"""No quantisation: the proxy model as loaded (the dense baseline every increase is measured against)."""

from workloads.accuracy.quantmethods._base import QuantMethod

METHOD = QuantMethod(activation=None, label=lambda spec: "none")
