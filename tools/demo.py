#!/usr/bin/env python
"""`make demo`: the end-to-end demo (synthetic MARS -> LMDB -> train ALL -> evaluate)."""
import sys

sys.exit("demo: not yet available; it lands with the demo issue (#7). `make test` works now.")
