"""Check every section of params.yaml, and the rules across sections, at once (exit 2 if any
is invalid). Every stage checks the sections it reads when it starts; this checks them all."""

from __future__ import annotations

import argparse
import sys

from instar.params.checks import check_all


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.check_params",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args()
    problems = check_all()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(2)
    print("params.yaml: all sections valid")


if __name__ == "__main__":
    main()
