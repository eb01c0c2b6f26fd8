"""The accuracy side of TIDE: the real proxy model running the algorithms a design implies, behind one seam.

``session.ProxySession(ProxySetup).measure(QuantSpec, KVSpec | None) -> Measured`` is the front door: it owns loading
(``real_model``, ``proxy``), the evaluation and calibration text (``text``), calibration, the rounding choice, the run
(the quantisation methods of ``quantmethods/`` through ``emulation``; the KV-selection methods of ``kvmethods/``
through ``kvselect``), perplexity (``perplexity``) and what identifies a measurement. Everything here needs torch
except ``specs`` and ``measured`` (the validated specifications and the typed results, which the configuration and
the cost side use) and ``proxy``; this package's ``__init__`` imports nothing, so ``import workloads.accuracy.specs``
stays torch-free.
"""
