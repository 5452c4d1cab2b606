"""A service's pid file is trusted only for a live process whose command line names the
service (`services.process.running_pid`, used by the local services and the Kafka nodes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cardscore.services.process import running_pid


def test_a_pid_counts_only_while_its_process_lives_and_names_the_service(tmp_path: Path) -> None:
    marker = str(tmp_path / "node-1" / "server.properties")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", marker],
                            stdin=subprocess.PIPE)
    pid_file = tmp_path / "node.pid"
    try:
        pid_file.write_text(f"{proc.pid}\n")
        assert running_pid(pid_file, marker) == proc.pid
        assert pid_file.exists()
        # Another service's marker (a recycled pid): not ours, and the stale file goes.
        assert running_pid(pid_file, str(tmp_path / "node-10" / "server.properties")) is None
        assert not pid_file.exists()
        pid_file.write_text(str(proc.pid))
    finally:
        proc.communicate(b"")  # end of input: it exits
    assert running_pid(pid_file, marker) is None  # dead: the file goes
    assert not pid_file.exists()
    assert running_pid(pid_file, marker) is None  # no file
    pid_file.write_text("not a pid")
    assert running_pid(pid_file, marker) is None
