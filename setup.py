"""Build hook: ship man/ and completions/ inside the package.

The sources stay at the top of the repository, where people look for them;
build_py copies them to nvmecontrol/_extras in the build tree, so wheels
carry them as package data for ``python3 -m nvmecontrol.install_extras``.
An editable install maps the package to the checkout instead, and
install_extras then reads them from the checkout itself.  The metadata is
in pyproject.toml.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
EXTRAS = ("man", "completions")


class BuildPyWithExtras(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in EXTRAS:
            src_dir = os.path.join(ROOT, name)
            dst_dir = os.path.join(self.build_lib, "nvmecontrol", "_extras", name)
            self.mkpath(dst_dir)
            for entry in sorted(os.listdir(src_dir)):
                src = os.path.join(src_dir, entry)
                if os.path.isfile(src):
                    self.copy_file(src, os.path.join(dst_dir, entry))


setup(cmdclass={"build_py": BuildPyWithExtras})
