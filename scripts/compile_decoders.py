"""Compile the decoding stage with mypyc (see tickpipe_brokers/compiled.py), unless it is current.

    uv run python scripts/compile_decoders.py            # build, if the sources changed
    uv run python scripts/compile_decoders.py --remove   # back to plain Python

Needs a C compiler and the Python headers; without them it says so and leaves the decoders as
Python (exit status 0: they work, only slower). Takes about half a minute.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

# Loaded from its file: importing the tickpipe_brokers package would refuse a stale build, which is
# what this script is here to replace.
_SPEC = importlib.util.spec_from_file_location(
    "compiled", Path(__file__).resolve().parent.parent / "libs/brokers/src/tickpipe_brokers/compiled.py"
)
assert _SPEC is not None and _SPEC.loader is not None
compiled = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compiled)


def remove() -> None:
    for ext in compiled.extensions():
        ext.unlink()
    for shared in compiled.ROOT.glob("*__mypyc.*"):  # mypyc's runtime, shared by the modules
        shared.unlink()
    (compiled.ROOT / compiled.STAMP).unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remove", action="store_true", help="remove the compiled decoders")
    args = parser.parse_args()
    if args.remove:
        remove()
        print("compile_decoders: removed; the decoders run as Python")
        return 0
    if compiled.is_current():
        print("compile_decoders: up to date")
        return 0
    digest = compiled.digest()
    remove()
    try:
        # mypyc builds in the working directory and puts each extension beside its source.
        result = subprocess.run(
            [sys.executable, "-m", "mypyc", *compiled.MODULES], cwd=compiled.ROOT, capture_output=True, text=True
        )
    finally:
        shutil.rmtree(compiled.ROOT / "build", ignore_errors=True)
        shutil.rmtree(compiled.ROOT / ".mypy_cache", ignore_errors=True)
    if result.returncode != 0:
        remove()
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        print(f"compile_decoders: not compiled, the decoders run as Python:\n{tail}", file=sys.stderr)
        return 0
    (compiled.ROOT / compiled.STAMP).write_text(digest + "\n")
    print(f"compile_decoders: compiled {len(compiled.MODULES)} modules")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
