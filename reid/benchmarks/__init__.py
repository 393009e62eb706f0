"""`make bench` sections (tools/bench.py runs every module's main()) and what they share."""
import json
import os
import subprocess
import sys


def run_worker(module, argv, threads):
    """Run ``python -m module --worker argv`` with OPENBLAS_NUM_THREADS fixed before NumPy
    and Caffe load (both BLAS copies then use the same number of threads); returns the JSON
    object the worker prints last."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, "-m", module, "--worker"] + [str(a) for a in argv]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("benchmark worker failed (%s):\n%s" % (" ".join(cmd), r.stderr[-3000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def worker_main(module, a, worker_argv, worker, format_table):
    """main() of a section measured in a worker process: in the worker (``a.worker``) run
    ``worker(a)``; otherwise start it with ``worker_argv``, print and return the table."""
    if a.worker:
        worker(a)
        return None
    table = format_table(run_worker(module, worker_argv, a.threads))
    print(table)
    return table
