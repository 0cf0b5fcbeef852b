"""The one C extension, the master's hand-off loop (cluster/intake/_handoff.c); the rest of
the project's set-up is in setup.cfg. ``optional``: where it cannot be compiled (no C
compiler, no Python headers) the install goes on and the master uses its Python loop."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("cluster.intake._handoff", ["cluster/intake/_handoff.c"],
                             extra_compile_args=["-O2"], optional=True)])
