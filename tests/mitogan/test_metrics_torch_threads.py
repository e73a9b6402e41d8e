"""torch's thread count survives overlapping one-thread blocks in Python threads (evaluate runs them side by side)."""

import threading

import torch

from mitogan.metrics.torch_threads import one_torch_thread, setting


def test_overlapping_blocks_in_threads_give_the_process_its_setting_back():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def a():  # enters first, leaves first: the interleaving that used to leave the process on one thread
            with one_torch_thread():
                a_in.set()
                b_in.wait()
                seen["a"] = (torch.get_num_threads(), setting())
            a_out.set()

        def b():
            a_in.wait()
            with one_torch_thread():
                b_in.set()
                a_out.wait()
                seen["b"] = (torch.get_num_threads(), setting())

        threads = [threading.Thread(target=f) for f in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {"a": (1, 3), "b": (1, 3)}  # one thread inside; the process's own setting is known
        assert torch.get_num_threads() == 3 and setting() == 3
    finally:
        torch.set_num_threads(before)
