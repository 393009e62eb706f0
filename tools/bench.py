#!/usr/bin/env python
"""`make bench`: every benchmark section in reid/benchmarks, measured side by side.

Each module there has main() that prints its own table with ratios; pass section names
(module names) to run only some: `bin/python tools/bench.py srm evaluation`.
"""
import importlib
import os
import pkgutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import reid.benchmarks  # noqa: E402


def main(argv):
    names = sorted(m.name for m in pkgutil.iter_modules(reid.benchmarks.__path__))
    chosen = argv or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        sys.exit("bench: unknown section(s) %s; available: %s" % (unknown, names))
    for name in chosen:
        print("\n=== bench: %s ===" % name, flush=True)
        t0 = time.perf_counter()
        sys.argv = ["bench " + name]     # each section's main() parses its own defaults
        importlib.import_module("reid.benchmarks." + name).main()
        print("(section %s took %.1f s)" % (name, time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
