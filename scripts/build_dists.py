"""Build every distribution of the repository (sdist and wheel) and run `twine check`.

Usage: python scripts/build_dists.py OUTDIR
A distribution is a folder with a pyproject.toml: the root (autokd), plugins/*, examples/*.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def distributions() -> list[Path]:
    folders = [ROOT] + sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
    return folders + sorted(p.parent for p in ROOT.glob("examples/*/pyproject.toml"))


def main(outdir: str) -> int:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for folder in distributions():
        if not (folder / "LICENSE").is_file():
            print(f"{folder.relative_to(ROOT)}: no LICENSE file beside pyproject.toml", file=sys.stderr)
            return 1
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(folder)], check=True)
    built = sorted(str(p) for p in out.iterdir())
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *built], check=True)
    print(f"{len(built)} files built from {len(distributions())} distributions, twine check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))
