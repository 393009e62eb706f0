#!/usr/bin/env python
"""`make bench`: every benchmark section in reid/benchmarks, measured side by side.

Each module there has main() that prints its own table with ratios; pass section names
(module names) to run only some, and options for them after `--`:

    bin/python tools/bench.py srm evaluation
    bin/python tools/bench.py search -- --gallery 1000000      # paper-size gallery
    make bench BENCH="search -- --gallery 1000000"
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
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    chosen = (argv[:argv.index("--")] if "--" in argv else argv) or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        sys.exit("bench: unknown section(s) %s; available: %s" % (unknown, names))
    if options and len(chosen) != 1:
        sys.exit("bench: options after -- need exactly one section, got %s" % chosen)
    for name in chosen:
        print("\n=== bench: %s ===" % name, flush=True)
        t0 = time.perf_counter()
        sys.argv = ["bench " + name] + options
        module = importlib.import_module("reid.benchmarks." + name)
        module.main(options) if options else module.main()
        print("(section %s took %.1f s)" % (name, time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
