"""``python -m dse.calibrate {tender,infinigen} [--write]``: fit the calibrated mechanism parameters
(implemented in :mod:`dse.studies.calibrate`)."""

import sys

from dse.studies.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
