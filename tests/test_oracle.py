"""The accuracy oracle's key: every input that affects a measurement changes it, the code included."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dse.config import AccuracyConfig
from dse.oracle import AccuracyOracle
from workloads.accuracy import kernels
from workloads.accuracy.emulation import quant_method
from workloads.accuracy.session import emulation_fingerprint
from workloads.accuracy.specs import KVSpec, QuantSpec, quant_method_names

QUANT = QuantSpec("tender", bits=4, groups=8, chunk=256, mode="calibrated", rounding="rup")
QUANT_VARIANTS = {"method": "per_token", "bits": 8, "groups": 4, "chunk": 64, "mode": "runtime", "rounding": "rdn",
                  "quantize_weights": False, "quantize_attention": True, "quantize_activations": False,
                  "smooth_alpha": 0.5, "act_scale": "per_tensor", "sites": "down_proj", "int8_share": 0.3}
#: what every method that quantises reads besides its own fields (``QuantMethod.key_fields``)
QUANTISING = {"quantize_weights", "quantize_activations", "sites"}
KV = KVSpec("infinigen", budget=0.2, alpha=4.0, partial_ratio=0.2, pool_size=1.0, eviction="counter", dense_layers=2)
KV_VARIANTS = {"method": "h2o", "budget": 0.3, "alpha": 6.0, "partial_ratio": 0.3, "pool_size": 0.5,
               "eviction": "lru", "dense_layers": 1, "spec_input": "prev", "skew_per": "query_head",
               "partial_cols": 26, "column_rule": "union", "column_source": "offline", "count_rule": "per_head",
               "report": True, "cache_bits": 4, "cache_group": 32}  # report: also stores the speculation quality


@pytest.fixture
def oracle(tmp_path: Path) -> AccuracyOracle:
    o = AccuracyOracle(AccuracyConfig(cache_dir=str(tmp_path), progress=False))
    o.session._identity = {  # what identity() computes, without hashing the model file
        "model": "/venv/model.gguf", "model_sha256": "a" * 64, "text_sha256": "b" * 64, "calib_sha256": "c" * 64,
        "windows": 4, "seq_len": 1024, "calib_windows": 4, "dtype": "torch.float32", "emulation": "d" * 64,
        "kernels": {"cpu_capability": "AVX2", "mkl_cbwr": "AVX2,STRICT", "torch": "2.13.0+cpu"},
    }
    return o


def test_every_quantisation_field_has_a_variant() -> None:
    assert set(QUANT_VARIANTS) | {"outlier_ratio"} == {f.name for f in dataclasses.fields(QuantSpec)}


@pytest.mark.parametrize("method", quant_method_names())
def test_the_fields_a_method_reads_and_only_those_change_its_key(oracle: AccuracyOracle, method: str) -> None:
    """Each quantisation method's key holds the fields it declares it reads (``QuantMethod.reads``), so two specs
    that the method computes alike share one measurement and two it computes differently never do."""
    base_spec = dataclasses.replace(QUANT, method=method)
    base = oracle.key(base_spec)
    variants = {**QUANT_VARIANTS, "outlier_ratio": 0.05}
    for name, value in variants.items():
        if name == "method" or (name == "quantize_attention" and method != "tender"):
            continue
        changed = oracle.key(dataclasses.replace(base_spec, **{name: value}))
        m = quant_method(method)
        if name in m.reads or (m.activation is not None and name in QUANTISING):
            assert changed != base, f"{method}: {name} does not reach the key"
        else:
            assert changed == base, f"{method}: {name} is not read, yet changes the key"
    assert oracle.key(dataclasses.replace(base_spec, method="per_token" if method != "per_token" else "tender")) != base


def test_every_kv_field_changes_the_key(oracle: AccuracyOracle) -> None:
    assert set(KV_VARIANTS) == {f.name for f in dataclasses.fields(KVSpec)}, "a field without a variant"
    base = oracle.key(QuantSpec(), KV)
    keys = {name: oracle.key(QuantSpec(), dataclasses.replace(KV, **{name: value}))
            for name, value in KV_VARIANTS.items()}
    assert base not in keys.values()
    assert len(set(keys.values())) == len(keys)
    assert oracle.key(QuantSpec(), KVSpec("dense")) == oracle.key(QuantSpec())  # dense = no selection
    assert oracle.key(QuantSpec(), KVSpec("dense", cache_bits=4)) != oracle.key(QuantSpec())  # a compressed cache


def test_auto_rounding_is_rup_in_runtime_mode(oracle: AccuracyOracle) -> None:
    """Runtime mode is always rup (the reference), so 'auto' there is the same measurement as 'rup'; in calibrated
    mode 'auto' (the NLL choice) is its own key."""
    runtime = QuantSpec("tender", bits=4, mode="runtime", rounding="auto")
    assert runtime.rounding == "rup" and oracle.key(runtime) == oracle.key(dataclasses.replace(runtime, rounding="rup"))
    assert oracle.key(dataclasses.replace(QUANT, rounding="auto")) not in {
        oracle.key(dataclasses.replace(QUANT, rounding=r)) for r in ("rup", "rdn")}


def test_every_identity_field_changes_the_key(oracle: AccuracyOracle) -> None:
    ident = dict(oracle.identity())
    base = oracle.key(QUANT)  # calibrated: the calibration text and windows count
    for name, value in ident.items():
        other = "other" if isinstance(value, str) else {**value, "cpu_capability": "AVX512"} if isinstance(
            value, dict) else value + 1
        oracle.session._identity = {**ident, name: other}
        changed = oracle.key(QUANT)
        if name == "model":  # the path is provenance; the file is identified by its hash
            assert changed == base
        else:
            assert changed != base, f"identity field {name} does not reach the key"
    oracle.session._identity = ident
    runtime = oracle.key(QuantSpec("tender", bits=8))
    oracle.session._identity = {**ident, "calib_sha256": "other", "calib_windows": 9}
    assert oracle.key(QuantSpec("tender", bits=8)) == runtime, "runtime Tender does not read the calibration text"


def test_emulation_fingerprint_follows_the_code_not_its_comments(tmp_path: Path) -> None:
    src = tmp_path / "workloads" / "accuracy"
    src.mkdir(parents=True)
    module = src / "m.py"
    module.write_text("def f(x):\n    return x + 1\n")
    first = emulation_fingerprint.__wrapped__((src,))
    module.write_text('"""Doc."""\n\n# a comment\ndef f(x):\n    """What f does."""\n    return x + 1  # note\n')
    assert emulation_fingerprint.__wrapped__((src,)) == first
    module.write_text("def f(x):\n    return x + 2\n")
    assert emulation_fingerprint.__wrapped__((src,)) != first
    assert len(emulation_fingerprint()) == 64


def test_a_damaged_cache_is_moved_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "accuracy.sqlite").write_bytes(b"this is not a database" * 100)
    oracle = AccuracyOracle(AccuracyConfig(cache_dir=str(tmp_path), progress=False))
    aside = list(tmp_path.glob("accuracy.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert "damaged" in caplog.text and str(aside[0]) in caplog.text
    assert oracle.lookup("0" * 64) is None  # a working, empty store


def test_the_measurement_kernels_are_pinned_and_part_of_the_identity() -> None:
    """On an x86 CPU with AVX2 a measuring process runs torch's and MKL's AVX2 paths (a variable the user set is
    kept), and the identity of every measurement names the kernels and package versions in effect."""
    code = ("import os, json\nimport workloads.accuracy.real_model\nfrom workloads.accuracy import kernels\n"
            "print(json.dumps(kernels.in_effect()))\n")
    run = lambda env: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: E731
                                     cwd=Path(__file__).resolve().parent.parent, env=env, timeout=120)
    base = {k: v for k, v in os.environ.items() if k not in kernels.X86_AVX2}
    pinned = run(base)
    assert pinned.returncode == 0, pinned.stderr
    effect = json.loads(pinned.stdout)
    if kernels.pins():
        assert effect["aten_cpu_capability"] == "avx2" and effect["cpu_capability"] == "AVX2"
        assert effect["mkl_cbwr"] == "AVX2,STRICT"
    mine = json.loads(run({**base, "ATEN_CPU_CAPABILITY": "default"}).stdout)
    assert mine["aten_cpu_capability"] == "default" and mine["cpu_capability"] == "DEFAULT"
    assert {"torch", "transformers", "gguf", "numpy"} <= set(effect)
