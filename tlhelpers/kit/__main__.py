"""``python -m tlhelpers.kit {install,download} DIR``."""

import sys

from . import main

sys.exit(main())
