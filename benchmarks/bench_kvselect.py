"""Forward time of the proxy model under the KV-selection emulation, as a ratio to the dense forward.

Dense = transformers' SDPA attention (the harness's default). Both timed in this process on the same
window (minimum of --repeats runs). InfiniGen uses skewing matrices calibrated once beforehand. The defaults
(``KVSpec()``: InfiniGen's default variant; h2o_online, system=h2o's selection; a compressed INT4 cache, system=int4kv)
must stay within 4x the dense forward (issue 16).

    python benchmarks/bench_kvselect.py [--seq-len 2048] [--repeats 2]
"""

from __future__ import annotations

import argparse

from _timing import forward_time, model_bench_parser, proxy_window  # benchmarks/ is on sys.path when run as a script

from workloads.accuracy.kvselect import Selector, calibrate_skew, kv_selection
from workloads.accuracy.specs import KVSpec
from workloads.accuracy.text import read_wikitext, token_windows


def build_parser() -> argparse.ArgumentParser:
    return model_bench_parser(__doc__, repeats=2)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg, lm, ids = proxy_window(args.seq_len)
    calib = token_windows(lm.tokenizer, read_wikitext(cfg.path("calib_path")), args.seq_len, 1).ids
    skew = calibrate_skew(lm.model, calib, lm.device)
    forward_time(lm.model, ids, 1)
    dense = forward_time(lm.model, ids, args.repeats)
    print(f"dense (SDPA) forward, 1 x {args.seq_len} tokens: {dense:.2f} s (min of {args.repeats})")
    paper = {"spec_input": "prev", "alpha": 4.0, "partial_ratio": 0.2}
    variants = (("infinigen (default)", KVSpec("infinigen", budget=0.2)),
                ("infinigen (paper's method)", KVSpec("infinigen", budget=0.2, **paper)),
                ("infinigen per-head counts", KVSpec("infinigen", budget=0.2, count_rule="per_head")),
                ("oracle_topk", KVSpec("oracle_topk", budget=0.2)), ("h2o", KVSpec("h2o", budget=0.2)),
                ("h2o_online", KVSpec("h2o_online", budget=0.2)), ("local", KVSpec("local", budget=0.2)),
                ("dense, INT4 cache", KVSpec("dense", cache_bits=4)))
    for name, spec in variants:
        with kv_selection(lm.model, Selector(spec, skew=skew)):
            t = forward_time(lm.model, ids, args.repeats)
        print(f"{name:<28} budget {spec.budget}: {t:.2f} s  ratio to dense {t / dense:.2f}")


if __name__ == "__main__":
    main()
