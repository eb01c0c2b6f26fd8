from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from dse.config import CONF_DIR, Config, register_schema, to_config

register_schema()


def compose_raw(overrides: list[str] | None = None) -> DictConfig:
    """The config with these overrides; unless they pick a system, the plain systolic one on SmolLM2
    shapes without accuracy coupling (the fast cost-model-only tests)."""
    overrides = list(overrides or [])
    if not any(o.startswith("system=") for o in overrides):
        overrides = ["system=systolic", *overrides]
    if not any(o.startswith("model=") for o in overrides):
        overrides = ["model=smollm2_135m", *overrides]
    if not any(o.startswith("accuracy.") for o in overrides):
        overrides = ["accuracy.objective=none", "accuracy.max_ppl_increase=null", *overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    return cfg


@pytest.fixture
def make_cfg() -> Callable[..., Config]:
    def _make(overrides: list[str] | None = None, **replace: object) -> Config:
        raw = compose_raw(overrides)
        for dotted, value in replace.items():  # replace a whole node (e.g. system__space)
            key = dotted.replace("__", ".")
            node = OmegaConf.select(raw, key)
            for old in list(node):
                del node[old]
            OmegaConf.update(raw, key, value, merge=True)
        return to_config(raw)

    return _make


SMALL_SPACE = {
    "rows": {"type": "categorical", "choices": [16, 32]},
    "cols": {"type": "categorical", "choices": [16, 64]},
    "dataflow": {"type": "categorical", "choices": ["os", "ws", "is"]},
    "bits": {"type": "categorical", "choices": [4, 8]},
    "dram_bw_gbps": {"type": "categorical", "choices": [32.0, 256.0]},
}
