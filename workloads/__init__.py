"""What runs on the hardware, in two halves: model shapes and the operator lists the cost models consume (this
package, numpy only), and the real-model side that measures accuracy (``workloads.accuracy``, torch, behind one seam:
``workloads.accuracy.session.ProxySession.measure``)."""

from workloads.operators import GemmOps, Phase, WorkloadSpec, build_operators
from workloads.shapes import ModelShape

__all__ = ["GemmOps", "ModelShape", "Phase", "WorkloadSpec", "build_operators"]
