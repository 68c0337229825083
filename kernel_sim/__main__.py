"""TEMPORARY command-line entry point (only `lab`); the lead engineer replaces
this file with the full CLI (`run`, `warmup`, `lab`)."""

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from kernel_sim.lab import main_lab

        return main_lab(argv[1:])
    print("usage: python -m kernel_sim lab [options]   (run/warmup: not written yet)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
