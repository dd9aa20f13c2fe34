"""Per-thread profiles of the processes ``bench.layers`` starts.

On PYTHONPATH only for those processes: when NVMECONTROL_BENCH_PROFILE names
a directory, every thread started with ``threading.Thread`` runs under its
own ``cProfile.Profile`` and leaves ``<dir>/<pid>.<thread name>.<n>.prof``
when it ends (the data-path threads end when their connection does).
"""

import os

_OUT = os.environ.get("NVMECONTROL_BENCH_PROFILE")
if _OUT:
    import cProfile
    import itertools
    import threading

    _count = itertools.count()
    _run = threading.Thread.run

    def _profiled_run(self):
        profile = cProfile.Profile()
        profile.enable()
        try:
            _run(self)
        finally:
            profile.disable()
            profile.dump_stats(os.path.join(_OUT, f"{os.getpid()}.{self.name}.{next(_count)}.prof"))

    threading.Thread.run = _profiled_run
