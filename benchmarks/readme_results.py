"""Put a reproduction's summary into the README's results section.

    python benchmarks/readme_results.py RUN_DIR [--readme README.md] [--assets docs/reproduce_cpu]

Replaces what stands between the README's markers ``<!-- reproduce:begin -->`` and
``<!-- reproduce:end -->`` with ``RUN_DIR/summary.md`` (written by ``cmvae reproduce``), after
copying the figures it shows (and the self-contained ``report.html``) into ``--assets`` and linking
them from there. Nothing outside the
markers changes; a README without exactly one pair of markers is refused, and so is a copy onto a
file in ``--assets`` that this script did not write (it lists its files in ``--assets/.readme_results``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

#: The list of files this script wrote into the assets folder; any other file there is never overwritten.
WRITTEN = ".readme_results"
BEGIN = "<!-- reproduce:begin -->"
END = "<!-- reproduce:end -->"
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def splice(readme: str, section: str) -> str:
    """``readme`` with the text between :data:`BEGIN` and :data:`END` replaced by ``section``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"the README needs exactly one {BEGIN} followed by one {END}")
    head, rest = readme.split(BEGIN)
    tail = rest.split(END)[1]
    return f"{head}{BEGIN}\n{section.strip()}\n{END}{tail}"


def relink(summary: str, run_dir: Path, assets: Path, readme_dir: Path) -> tuple[str, list[tuple[Path, Path]]]:
    """``summary`` with each figure path (relative to ``run_dir``) pointing at its copy in ``assets``,
    written relative to ``readme_dir``; and the (source, copy) pairs to make."""
    copies: list[tuple[Path, Path]] = []

    def move(match: re.Match) -> str:
        rel = Path(match.group(2))
        source = run_dir / rel
        if not source.is_file():
            raise FileNotFoundError(f"{source}: a figure of {run_dir / 'summary.md'} is missing")
        parts = rel.parts[1:] if rel.parts[0] == "parts" else rel.parts
        target = assets / "_".join(parts)
        copies.append((source, target))
        return f"![{match.group(1)}]({Path(os.path.relpath(target, readme_dir)).as_posix()})"

    return IMAGE.sub(move, summary), copies


def check_targets(assets: Path, copies: list[tuple[Path, Path]]) -> None:
    """Refuse (``FileExistsError``) a copy onto a file in ``assets`` that this script did not write."""
    listed = assets / WRITTEN
    ours = set(listed.read_text(encoding="utf-8").split()) if listed.is_file() else set()
    foreign = [str(t) for _, t in copies if t.exists() and t.name not in ours]
    if foreign:
        raise FileExistsError(f"{', '.join(foreign)}: not written by readme_results.py; move it or choose --assets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--assets", type=Path, default=Path("docs/reproduce_cpu"))
    args = parser.parse_args(argv)
    summary_path = args.run_dir / "summary.md"
    try:
        summary = summary_path.read_text(encoding="utf-8")
        text, copies = relink(summary, args.run_dir, args.assets, args.readme.resolve().parent)
        report = args.run_dir / "report.html"
        if report.is_file():  # the self-contained report (figures embedded) goes along
            copies.append((report, args.assets / "report.html"))
            link = Path(os.path.relpath(args.assets / "report.html", args.readme.resolve().parent)).as_posix()
            text += f"\nThe whole report of this run: [{link}]({link}).\n"
        readme = splice(args.readme.read_text(encoding="utf-8"), text)
        check_targets(args.assets, copies)
    except (OSError, ValueError) as err:
        print(f"readme_results: {err}", file=sys.stderr)
        return 2
    args.assets.mkdir(parents=True, exist_ok=True)
    listed = args.assets / WRITTEN
    names = set(listed.read_text(encoding="utf-8").split()) if listed.is_file() else set()
    listed.write_text("\n".join(sorted(names | {t.name for _, t in copies})) + "\n", encoding="utf-8")
    for source, target in copies:
        shutil.copyfile(source, target)
    tmp = args.readme.with_name(f".{args.readme.name}.tmp")
    tmp.write_text(readme, encoding="utf-8")
    os.replace(tmp, args.readme)
    print(f"{args.readme}: results section from {summary_path}; {len(copies)} figure(s) in {args.assets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
