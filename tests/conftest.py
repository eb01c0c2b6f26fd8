from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
from omegaconf import DictConfig, OmegaConf

if os.environ.get("PYTEST_XDIST_WORKER"):  # two test processes share the cores: one compute thread each (torch,
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # MKL, and the subprocesses the tests start), set before
        os.environ.setdefault(_var, "1")  # torch is first imported; measurements do not depend on it (MKL_CBWR STRICT)

from dse.config import CONF_DIR, Config, register_schema, to_config
from dse.config import compose_raw as config_tree

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
    if not any(o.startswith("output.report=") for o in overrides):  # report.html: tests/test_report*.py
        overrides = ["output.report=false", *overrides]
    cfg = config_tree(overrides)
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


# -- PostgreSQL: a real server ------------------------------------------------------------------------------
POSTGRES_SCRIPT = CONF_DIR.parent / "scripts" / "postgres.sh"


class Postgres:
    """A running server: ``TIDE_POSTGRES_URL`` (started by .ci/run with scripts/postgres.sh), else one this
    test session starts in a temporary directory (and stops). ``database()`` makes a fresh database."""

    def __init__(self, url: str, directory: str | None) -> None:
        self.url = url
        self.directory = directory

    def database(self) -> str:
        import uuid

        import sqlalchemy as sa

        name = f"test_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    url = os.environ.get("TIDE_POSTGRES_URL")
    if url:
        yield Postgres(url, None)
        return
    directory = tempfile.mkdtemp(prefix="tide-pg-")  # under /tmp: reachable by the postgres user when root
    proc = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", directory], capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL could not be started: {proc.stderr.strip()}")
        pytest.skip(f"PostgreSQL could not be started here (scripts/postgres.sh: {proc.stderr.strip()[-300:]})")
    try:
        yield Postgres(proc.stdout.strip().splitlines()[-1], directory)
    finally:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", directory], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.database()
