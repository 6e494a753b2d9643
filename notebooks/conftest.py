"""``python -m pytest notebooks``: nbval runs every notebook in quick mode (the bundled
sample or a small slice of the kit's data, and a couple of epochs). The notebooks'
kernels inherit this variable.

At the end of the run, a short table gives each notebook's time (kernel start and
every cell), the figure to watch against the two-minute budget per notebook.
"""

import os
from collections import defaultdict

os.environ.setdefault("TLHELPERS_QUICK", "1")

_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[os.path.basename(path)] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        terminalreporter.section("notebook times (quick mode)")
        for name, seconds in sorted(_seconds.items()):
            terminalreporter.write_line(f"{name:<40} {seconds:6.1f} s")
