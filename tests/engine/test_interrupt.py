"""mrcnn.engine.interrupt: the first Ctrl-C waits for the next safe point, the second stops at once."""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from mrcnn.engine import interrupt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_first_sigint_is_deferred_to_check():
    done = []
    with interrupt.deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)   # handled between bytecodes, right here
        done.append("work after the signal ran")   # e.g. the rest of a checkpoint write
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.requested()
        interrupt.check()   # nothing pending: no raise
    assert done
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored


def test_second_sigint_raises_at_once():
    with interrupt.deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10 ** 6):   # never reaches a check(): the handler itself raises
                pass
    assert not interrupt.requested()   # cleared on exit


def test_no_op_outside_the_main_thread_and_when_ignored():
    seen = []

    def worker():
        with interrupt.deferred_sigint():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.deferred_sigint():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN   # nohup'd jobs stay immune
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_real_ctrl_c_from_outside_stops_at_the_check(tmp_path):
    """A separate process gets SIGINT mid-'write'; the write completes, then the loop stops."""
    script = textwrap.dedent("""
        import sys, time
        from mrcnn.engine import interrupt
        with interrupt.deferred_sigint():
            print("ready", flush=True)
            try:
                for step in range(600):
                    time.sleep(0.05)                      # a step or a file write
                    open(sys.argv[1], "a").write(f"{step}\\n")
                    interrupt.check()
            except KeyboardInterrupt:
                print("stopped after step", step, flush=True)
                sys.exit(130)
        sys.exit(0)
    """)
    out = tmp_path / "steps.txt"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.readline().strip() == "ready"
    threading.Event().wait(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    last = int(stdout.split()[-1])
    assert out.read_text().split() == [str(i) for i in range(last + 1)]   # every started step finished
    assert "press again to stop at once" in stderr
