"""Helpers shared by the tests that start servers in child processes."""
import signal
import subprocess


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a child politely (SIGTERM), then firmly (SIGKILL) if it does not exit in 15 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
