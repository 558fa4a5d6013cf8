"""``python -m sweeps ...``: the sweep driver's command line (the same as ``python sweeps/decathlon.py ...``)."""

from sweeps.cli import exit_fast, main

if __name__ == "__main__":
    exit_fast(main())
