"""A resumed coupled study must be the same problem: its record is derived from what makes the accuracy keys and the
cost model's config, so changing the proxy, any ``kv.*`` / ``quant.*`` field a search reads, the measurement set-up,
the model, technology, system or workload is refused with the field named, and nothing else is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dse.config import Config, ConfigError, to_config
from dse.coupling import AccuracyProvider, problem_for
from dse.study import open_study
from dse.systems import make_system
from tests.conftest import compose_raw

#: a value other than the default for every field a search reads from ``kv.*`` / ``quant.*`` (the test below checks
#: that this covers exactly the fields the systems read: a new spec field needs a variant here)
KV_VARIANTS = {"spec_input": "prev", "skew_per": "query_head", "column_rule": "union", "column_source": "offline",
               "count_rule": "per_head", "eviction": "lru"}
#: the joint system reads the CPU pool and the cache compression from kv.* too (the offloading family sets them)
JOINT_KV_VARIANTS = {"pool_size": 0.5, "cache_bits": 8, "cache_group": 32}
QUANT_VARIANTS = {"rounding": "rdn", "quantize_weights": "false", "quantize_activations": "false"}

SYSTEMS = {"tender": ["system=tender", "model=opt_6_7b"], "infinigen": ["system=infinigen", "model=opt_13b"],
           "tender_infinigen": ["system=tender_infinigen", "model=opt_6_7b"]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accuracy-cache")  # the model files' hashes are memoised here once


def _base_overrides(system: str, cache: Path, run: Path) -> list[str]:
    return [*SYSTEMS[system], "accuracy.objective=ppl_increase", "accuracy.max_ppl_increase=5",
            f"accuracy.cache_dir={cache}", "accuracy.progress=false", "search.progress=false",
            f"search.storage={run / 'study.journal'}"]


def _cfg(make_cfg: Callable[..., Config], system: str, cache: Path, run: Path, *overrides: str) -> Config:
    return make_cfg([*_base_overrides(system, cache, run), *overrides])


def _open(cfg: Config, run: Path) -> None:
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    open_study(cfg, run, problem)


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict[str, Path]:
    """One coupled study per system, created (nothing is measured: the record needs the set-up's identity only)."""
    runs = {}
    for system in SYSTEMS:
        run = tmp_path_factory.mktemp(system)
        _open(to_config(compose_raw(_base_overrides(system, cache, run))), run)
        runs[system] = run
    return runs


CASES = [
    ("tender", ["accuracy=gemma3_270m"], r"accuracy\.proxy: 'smollm2_135m' -> 'gemma3_270m'"),
    ("infinigen", ["accuracy=gemma3_270m"], r"accuracy\.proxy: 'smollm2_135m' -> 'gemma3_270m'"),
    *[("infinigen", [f"kv.{k}={v}"], rf"accuracy\.specs\.kv\.{k}: ") for k, v in KV_VARIANTS.items()],
    *[("tender_infinigen", [f"kv.{k}={v}"], rf"accuracy\.specs\.kv\.{k}: ") for k, v in JOINT_KV_VARIANTS.items()],
    *[("tender", [f"quant.{k}={v}"], rf"accuracy\.specs\.quant\.{k}: ") for k, v in QUANT_VARIANTS.items()],
    ("tender", ["accuracy.windows=2"], r"accuracy\.measurement\.windows: 4 -> 2"),
    ("tender", ["accuracy.seq_len=512"], r"accuracy\.measurement\.seq_len: 1024 -> 512"),
    ("tender", ["accuracy.dtype=bfloat16"], r"accuracy\.measurement\.dtype"),
    ("tender", ["accuracy.max_ppl_increase=3"], r"accuracy\.max_ppl_increase: 5\.0 -> 3\.0"),
    ("tender", ["accuracy.screening.enabled=true"], r"accuracy\.screening\.enabled: False -> True"),
    ("tender", ["model=llama2_7b"], r"model\.name: 'OPT-6.7B' -> 'Llama-2-7B'"),
    ("tender", ["tech=7nm"], r"tech\.name: '45nm' -> '7nm'"),
    ("tender", ["system.space.bits.choices=[8]"], r"system\.space\.bits\.choices"),
    ("tender", ["system.quant_method=null"], r"system\.objectives: .* other objectives"),  # no accuracy
    ("tender", ["workload.batch=2"], r"workload\.batch: 1 -> 2"),
]


@pytest.mark.parametrize(("system", "overrides", "named"), CASES, ids=[" ".join(o) for _, o, _ in CASES])
def test_a_resume_with_another_problem_is_refused_naming_the_field(
        make_cfg: Callable[..., Config], created: dict[str, Path], cache: Path, system: str, overrides: list[str],
        named: str) -> None:
    run = created[system]
    journal = (run / "study.journal").read_bytes()
    cfg = _cfg(make_cfg, system, cache, run, "search.resume=true", *overrides)
    with pytest.raises(ConfigError, match=named):
        _open(cfg, run)
    assert (run / "study.journal").read_bytes() == journal, "a refused resume writes nothing"


UNREAD = ["kv.budget=0.9", "kv.alpha=9", "quant.bits=4", "quant.outlier_ratio=0.1", "accuracy.threads=1",
          "accuracy.device=cpu", "search.n_trials=7"]


@pytest.mark.parametrize("overrides", [[], UNREAD, ["kv.pool_size=0.5", "kv.cache_bits=8"]],
                         ids=["same", "unread", "offload-set"])
@pytest.mark.parametrize("system", ["tender", "infinigen"])
def test_what_changes_no_measurement_resumes(make_cfg: Callable[..., Config], created: dict[str, Path], cache: Path,
                                             system: str, overrides: list[str]) -> None:
    """Fields a search sets from the design point or the system (kv.budget, kv.pool_size, quant.bits), fields the
    method does not read (Tender and quant.outlier_ratio), and how torch runs or how long the study is: the same
    problem."""
    _open(_cfg(make_cfg, system, cache, created[system], "search.resume=true", *overrides), created[system])


def test_the_variants_cover_every_field_a_search_reads(make_cfg: Callable[..., Config], cache: Path,
                                                       tmp_path: Path) -> None:
    read: dict[str, set[str]] = {"quant": set(), "kv": set()}
    for name in ("tender", "infinigen", "tender_infinigen", "h2o", "int4kv", "flexgen"):
        cfg = make_cfg([f"system={name}", "accuracy.objective=ppl_increase", f"accuracy.cache_dir={cache}"])
        system = make_system(cfg)
        provider = AccuracyProvider(cfg, system)
        for section, fields in provider.spec_inputs().items():
            read[section] |= set(fields)
    assert read == {"quant": set(QUANT_VARIANTS), "kv": set(KV_VARIANTS) | set(JOINT_KV_VARIANTS)}
