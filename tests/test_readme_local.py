"""The README's "Local stack" block, run by bash as a user pastes it: ``s3sink local up`` in its
own state directory, ``status``, the Python heredoc that produces and consumes a test record
through the variables ``up`` printed, and ``down``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_local_cli import EXPORTED
from tests.test_readme import fenced_blocks
from tests.test_readme_commands import commands_under

pytestmark = pytest.mark.integration

LOCAL = "## Local stack"


@pytest.mark.slow
def test_local_stack_block(tmp_path: Path) -> None:
    (block,) = [b for h, lang, b in fenced_blocks() if h == LOCAL and lang == "sh"]
    lines = commands_under(LOCAL)
    assert [line.split()[:3] for line in lines] == [
        ["eval", '"$(s3sink', "local"],
        ["s3sink", "local", "status"],
        ["python", "-", "<<'PY'"],
        ["s3sink", "local", "down"],
    ]
    state = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items() if k not in EXPORTED}  # only what `up` prints
    env["S3SINK_LOCAL_STATE_DIR"] = str(state)  # `up`'s default state dir, kept apart
    # `s3sink` and `python` of the README are this environment's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        done = subprocess.run(
            ["bash", "-c", "set -eu\n" + block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout.splitlines()
        assert out[-1] == "b'world'", done.stdout
        assert any(line.startswith("kafka") and "bootstrap 127.0.0.1:" in line for line in out)
        assert "stopped" in done.stderr
        assert not (state / "kafka" / "kafka.pid").exists()
    finally:
        subprocess.run(
            [sys.executable, "-m", "s3sink", "local", "down", "--purge", "--state-dir", str(state)],
            check=False,
            capture_output=True,
            timeout=120,
        )
