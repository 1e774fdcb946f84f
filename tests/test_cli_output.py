"""What a stage prints besides its results: ttscale's own warnings come out as one line each."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_project_warnings_are_one_line_and_library_ones_keep_their_form(tmp_path):
    script = textwrap.dedent(f"""
        import warnings
        from ttscale.cli import _quiet_libraries
        from ttscale.data.formats import write_rows
        _quiet_libraries("label")
        # a lossy export (soft labels into a hard-label format), as `label --export math-shepherd` can be
        write_rows("math-shepherd", [{{"id": "a", "problem": "1+1", "steps": ["x"], "labels": [0.5]}}],
                   {str(tmp_path / "out.jsonl")!r})
        warnings.warn_explicit("a library's own warning", UserWarning, "/elsewhere/lib.py", 3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    ours = [ln for ln in lines if ln.startswith("ttscale label: warning:")]
    assert len(ours) == 1 and "soft labels made hard" in ours[0]
    assert not any("warnings.warn(" in ln for ln in lines)           # no raw source line
    assert any("/elsewhere/lib.py:3: UserWarning: a library's own warning" in ln for ln in lines)
