"""``python -m dse.fidelity {tender,infinigen} --out DIR [--sensitivity]``: the fidelity studies
(implemented in :mod:`dse.studies.fidelity`)."""

import sys

from dse.studies.fidelity import main

if __name__ == "__main__":
    sys.exit(main())
