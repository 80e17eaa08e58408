"""The optional C part of the package, built by ``pip install -e .`` (``make venv``); all
other metadata is in pyproject.toml. ``optional=True``: on a machine without a C compiler
the install still succeeds and the Binance parsers run in pure Python, with the same output
(normalizer/venues/binance/parse.py; tests/venues/binance/test_speedups.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "normalizer.venues.binance._speedups",
            ["normalizer/venues/binance/_speedups.c"],
            optional=True,
        ),
        Extension("replay._build", ["replay/_build.c"], optional=True),
    ]
)
