"""nbval runs every notebook in quick mode: the bundled sample or a small slice of
the kit's data, and a couple of epochs. The notebooks' kernels inherit this variable."""

import os

os.environ.setdefault("TLHELPERS_QUICK", "1")
