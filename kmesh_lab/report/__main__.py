"""``python -m kmesh_lab.report render --run-dir results/<run_id>``."""

import sys

from kmesh_lab.report.render import main

sys.exit(main())
