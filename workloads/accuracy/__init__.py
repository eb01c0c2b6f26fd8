"""The accuracy side of TIDE: the real proxy model running the algorithms a design implies.

Loading (``real_model``), evaluation text (``text``), perplexity (``perplexity``), Tender fake
quantisation (``quant``, ``emulation``) and KV-token selection (``kvselect`` with one module per
method in ``kvmethods/``). Everything here needs torch except ``specs``, the validated descriptions
of a quantisation and a KV selection that the configuration and the cost side use; this package's
``__init__`` imports nothing, so ``import workloads.accuracy.specs`` stays torch-free.
"""
