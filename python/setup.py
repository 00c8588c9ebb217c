"""setup.py — only for bundling: with LFM2C_BUNDLE_LIB=PATH/liblfm2c.so at build time the
library is copied into the package (lfm2c/liblfm2c.so, found before the system's) and the wheel
is tagged for this platform. Without it the package is pure Python and loads the library from
LFM2C_LIB or the system loader's path (pyproject.toml has the metadata)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

BUNDLE = os.environ.get("LFM2C_BUNDLE_LIB")


class BuildPy(build_py):
    def run(self):
        super().run()
        if BUNDLE:
            if not os.path.isfile(BUNDLE):
                raise SystemExit("LFM2C_BUNDLE_LIB=%s: no such file" % BUNDLE)
            shutil.copyfile(BUNDLE, os.path.join(self.build_lib, "lfm2c", "liblfm2c.so"))


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return bool(BUNDLE)


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
