"""The master's command queue: what a signal or a call from another thread leaves for the loop."""
from __future__ import annotations

import os
import selectors
import signal
import threading

from cluster.commands import CommandQueue


def test_a_call_from_another_thread_wakes_the_loop_and_runs_once_in_order():
    queue = CommandQueue()
    selector = selectors.DefaultSelector()
    queue.register(selector)
    ran: list[str] = []
    assert selector.select(0) == [] and not queue
    thread = threading.Thread(target=lambda: [queue.post(lambda n=n: ran.append(n))
                                              for n in ("first", "second")])
    thread.start()
    thread.join()
    events = selector.select(5)
    assert events  # woken
    for key, mask in events:
        key.data(key.fileobj, mask)  # drains the wake-ups
    for command in queue.take():
        command()
    assert ran == ["first", "second"]
    assert list(queue.take()) == [] and selector.select(0) == []
    selector.close()
    queue.close()


def test_a_signal_is_only_queued_by_its_handler_and_wakes_the_selector():
    queue = CommandQueue()
    selector = selectors.DefaultSelector()
    queue.register(selector)
    queue.install(["WINCH"], lambda signum, _frame: queue.put_signal(signum))
    try:
        os.kill(os.getpid(), signal.SIGWINCH)
        assert selector.select(5)  # the kernel's wake-up fd woke it
        assert list(queue.take()) == [signal.SIGWINCH]
    finally:
        queue.restore(["WINCH"])
    assert signal.getsignal(signal.SIGWINCH) is signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # no longer the queue's pipe
    selector.close()
    queue.close()
