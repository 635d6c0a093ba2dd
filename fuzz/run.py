"""Run one fuzz target under atheris (libFuzzer): `python -m fuzz.run TARGET [libFuzzer args]`.

    python -m fuzz.run sip_message -max_total_time=600 /tmp/corpus fuzz/corpus/sip_message

The first corpus folder receives the new inputs found; the seeds of
fuzz/seeds.py are added as a last, read-only one (`-no_seeds=1` leaves them
out). libFuzzer prints the inputs tried (`#N`) and the coverage (`cov:`
edges, `ft:` features); a crash writes `crash-*` (see -artifact_prefix) and
exits non-zero.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

import atheris


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in _names():
        sys.stderr.write(f"usage: python -m fuzz.run TARGET [libFuzzer args]\n"
                         f"targets: {', '.join(_names())}\n")
        sys.exit(2)
    name = argv[1]
    from fuzz.targets import MODULES

    # Instrument the parser's modules: they are imported here first, under
    # atheris, so that their bytecode carries the coverage hooks.
    with atheris.instrument_imports(include=[m.split(".")[0] for m in MODULES[name]]):
        for module in MODULES[name]:
            importlib.import_module(module)
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    args = argv[2:]
    if "-no_seeds=1" in args:
        args.remove("-no_seeds=1")
    else:
        # The seeds go last: libFuzzer writes new inputs only to the first folder.
        from fuzz.seeds import write_seeds
        # One folder per target, rewritten each run: atheris leaves through
        # os._exit, so a fresh temporary folder would never be removed.
        seed_dir = Path(tempfile.gettempdir()) / f"softswitch-fuzz-seeds-{name}"
        args.append(str(write_seeds(name, seed_dir)))
    atheris.Setup([argv[0], *args], target)
    atheris.Fuzz()


def _names() -> list[str]:
    from fuzz.targets import TARGETS
    return list(TARGETS)


if __name__ == "__main__":
    main(sys.argv)
