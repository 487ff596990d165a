"""Where the unit tests find Armada's example simulator files, and how they write their own."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).parents[2].parent / "shared" / "armada-formats" / "simulator"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"{SHARED} is absent")

GIB = 2**30 * 1000  # one Gi in milli-units


def write(tmp_path: Path, name: str, text: str) -> Path:
    """``text`` written to ``tmp_path / name``; the file's path."""
    path = tmp_path / name
    path.write_text(text)
    return path
