"""Services owned by a process (tests, the demo, a notebook) die with it, and can be started
from a process in which gRPC already ran (a Spark Connect session): the launcher sets the
parent-death signal and execs, with no Python `preexec_fn` in a forked child (after gRPC, its
fork handlers aborted such a child: the Kafka storage format exited with SIGABRT in CI)."""

from __future__ import annotations

import subprocess
import sys

import psutil

from cardscore.services.process import dying_with_parent, wait_until


def test_an_owned_child_keeps_its_pid_and_dies_with_its_parent() -> None:
    parent = subprocess.run(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         "from cardscore.services.process import dying_with_parent\n"
         "child = subprocess.Popen(dying_with_parent(['sleep', '120']))\n"
         "print(child.pid, flush=True)\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    pid = int(parent.stdout.split()[0])
    # The parent has exited; the kernel sends its child SIGTERM (it would sleep two minutes).
    wait_until(lambda: not _running(pid), 30, what="the owned child to die with its parent")


def test_the_launched_command_is_the_process_itself() -> None:
    child = subprocess.Popen(dying_with_parent(["sleep", "30"]))
    try:
        wait_until(lambda: psutil.Process(child.pid).cmdline() == ["sleep", "30"], 30,
                   what="the launcher to exec the command under its own pid")
    finally:
        child.terminate()
        child.wait(30)


def test_owned_children_start_after_grpc_ran_in_this_process(spark) -> None:
    assert spark.range(3).count() == 3  # a Spark Connect call: gRPC threads in this process
    for _ in range(5):
        done = subprocess.run(dying_with_parent([sys.executable, "-c", "print('ok')"]), capture_output=True,
                              text=True, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
