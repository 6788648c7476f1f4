"""The checked-in generated code is exactly what python/generate.py makes from proto/ now: a proto change without
regenerating, or a hand edit of src/roster_client/_proto/, fails here."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import roster_client

PYTHON_DIR = Path(__file__).resolve().parents[1]
CHECKED_IN = PYTHON_DIR / "src" / "roster_client" / "_proto"


def files_under(root: Path) -> "set[str]":
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(PYTHON_DIR / "generate.py"), "--out", str(out)], check=True)
    fresh, checked_in = files_under(out), files_under(CHECKED_IN)
    assert fresh == checked_in, (
        f"generated files differ from the checked-in ones: only fresh {sorted(fresh - checked_in)}, only checked in "
        f"{sorted(checked_in - fresh)}; run python python/generate.py"
    )
    differ = [name for name in sorted(fresh) if not filecmp.cmp(out / name, CHECKED_IN / name, shallow=False)]
    assert not differ, f"{differ} differ from what proto/ generates now; run python python/generate.py"


def test_every_service_is_generated_and_the_package_is_typed() -> None:
    package = Path(roster_client.__file__).parent
    assert (package / "py.typed").is_file()
    protos = sorted(p.stem for p in (PYTHON_DIR.parent / "proto" / "roster" / "v1").glob("*.proto"))
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (package / "_proto" / "roster" / "v1" / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
