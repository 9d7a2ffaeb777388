"""``python -m explorer.report RESULTS_DIR [--time-axis seconds|samples]``: see
``explorer.report.build``."""

import sys

from explorer.report.build import main

sys.exit(main())
