"""What runs on the hardware: model shapes and the operator lists they produce."""

from workloads.operators import GemmOps, Phase, WorkloadSpec, build_operators
from workloads.shapes import ModelShape

__all__ = ["GemmOps", "ModelShape", "Phase", "WorkloadSpec", "build_operators"]
