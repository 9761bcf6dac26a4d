"""Builds the optional C speedups; all other metadata is in pyproject.toml.

WS13_BUILD_EXTENSION=yes makes a failed build an error, =no skips it; by
default a missing compiler falls back silently to pure Python.
"""

import os
import platform

from setuptools import Extension, setup

build = os.environ.get("WS13_BUILD_EXTENSION", "auto")
ext_modules = []
if build != "no" and platform.python_implementation() == "CPython":
    ext_modules.append(
        Extension(
            "ws13._speedups",
            sources=[
                "src/ws13/_speedups.c",
                "src/ws13/_corebase.c",
                "src/ws13/_maskkeys.c",
                "src/ws13/_payload.c",
                "src/ws13/_utf8.c",
            ],
            depends=["src/ws13/_speedups.h"],
            optional=build != "yes",
            extra_compile_args=["-O3"],
        )
    )

setup(ext_modules=ext_modules)
