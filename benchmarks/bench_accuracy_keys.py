"""What an accuracy key costs on an empty cache, and where the time goes, in one run.

1. Start-up of a measuring process: the proxy loaded with its tokenizer read from the GGUF file (an empty cache:
   what every process paid before the tokenizer was cached) and again with the saved tokenizer (what a process pays
   now), then the evaluation text tokenised.
2. ``--keys`` keys of the default Tender space measured by one session (``accuracy.*`` as configured, default
   4 x 1024 tokens): keys per minute, and the dense forward over the same windows for scale.
3. A screen of each key (``--screen-windows`` x ``--screen-seq-len``) on a session beside the full one (sharing its
   loaded proxy): its cost as a share of the full key's (screening pays at a quarter or less).

    python benchmarks/bench_accuracy_keys.py [--keys 3] [--screen-windows 1] [--screen-seq-len 512] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from dse.config import compose_raw, to_config
from dse.oracle import AccuracyOracle
from workloads.accuracy.perplexity import perplexity
from workloads.accuracy.real_model import load
from workloads.accuracy.specs import QuantSpec

#: the first keys of the default Tender space (bits x groups x chunk), in the order a search meets them
KEYS = [QuantSpec("tender", bits=b, groups=g, chunk=c) for b in (8, 4) for g in (8, 1, 16) for c in (256, 64)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of accuracy.*, e.g. accuracy.windows=2")
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--screen-windows", type=int, default=1)
    parser.add_argument("--screen-seq-len", type=int, default=512)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = to_config(compose_raw(["accuracy.progress=false", *args.overrides])).accuracy
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        load(None, proxy=cfg.proxy.to_packaged(), cache_dir=cache)  # dequantise once (not what is compared)
        for tok in cache.glob("models/*.tokenizer"):
            shutil.rmtree(tok)
        t0 = time.perf_counter()
        load(None, proxy=cfg.proxy.to_packaged(), cache_dir=cache)
        gguf_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        load(None, proxy=cfg.proxy.to_packaged(), cache_dir=cache)
        saved_s = time.perf_counter() - t0
        print(f"load the proxy: tokenizer from the GGUF file {gguf_s:.1f} s, from the saved tokenizer {saved_s:.1f} s "
              f"(ratio {saved_s / gguf_s:.2f})")
        full = AccuracyOracle(dataclasses.replace(cfg, cache_dir=str(cache)))
        t0 = time.perf_counter()
        lm, windows, _ = full.session.loaded()
        print(f"start-up of a session (load + tokenise the text): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        perplexity(lm.model, windows, device=lm.device)
        dense_s = time.perf_counter() - t0
        screen = AccuracyOracle(dataclasses.replace(cfg, cache_dir=str(cache), windows=args.screen_windows,
                                                    seq_len=args.screen_seq_len), beside=full)
        full_s, screen_s = [], []
        for spec in KEYS[: args.keys]:
            t0 = time.perf_counter()
            full.measure(spec)
            full_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            screen.measure(spec)
            screen_s.append(time.perf_counter() - t0)
        per_key = sum(full_s) / len(full_s)
        print(f"{len(full_s)} keys of {cfg.windows} x {cfg.seq_len} tokens: {per_key:.1f} s per key = "
              f"{60 / per_key:.2f} keys per minute; the dense forward over the same windows {dense_s:.1f} s "
              f"(a key costs {per_key / dense_s:.2f} x the dense forward)")
        share = sum(screen_s) / sum(full_s)
        print(f"a screen of {args.screen_windows} x {args.screen_seq_len} tokens: "
              f"{sum(screen_s) / len(screen_s):.1f} s = {share:.2f} of a full key "
              f"({'pays' if share <= 0.25 else 'does not pay'}: the bar is 0.25)")


if __name__ == "__main__":
    main()
