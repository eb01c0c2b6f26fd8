"""Forward time of the proxy model with Tender fake quantisation, as a ratio to the plain forward.

Both are timed in this process on the same window (minimum of --repeats runs, so slow spells of the
machine affect both alike). Model: the default proxy (SmolLM2-135M-Instruct), FP32 on CPU.

    python benchmarks/bench_fakequant.py [--seq-len 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse

from _timing import forward_time, model_bench_parser, proxy_window  # benchmarks/ is on sys.path when run as a script

from workloads.accuracy.emulation import quantized
from workloads.accuracy.specs import QuantSpec


def build_parser() -> argparse.ArgumentParser:
    return model_bench_parser(__doc__, repeats=3)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _, lm, ids = proxy_window(args.seq_len)
    forward_time(lm.model, ids, 1)  # warm-up
    plain = forward_time(lm.model, ids, args.repeats)
    print(f"plain forward, 1 x {args.seq_len} tokens: {plain:.3f} s (min of {args.repeats})")
    for spec in (QuantSpec("tender", bits=8, groups=8, chunk=256), QuantSpec("tender", bits=4, groups=14, chunk=64),
                 QuantSpec("per_token", bits=8)):
        with quantized(lm.model, spec):
            forward_time(lm.model, ids, 1)
            t = forward_time(lm.model, ids, args.repeats)
        detail = f" G={spec.groups} S={spec.chunk}" if spec.method == "tender" else ""
        label = f"{spec.method} INT{spec.bits}{detail}"
        print(f"{label:<28} {t:.3f} s  ratio to plain {t / plain:.2f}")


if __name__ == "__main__":
    main()
