"""Progress lines for the long benchmark scripts.

A full run takes minutes to hours (ResNetV2-50 at 224x224 on a CPU), so
each script says what it starts, how far it is and how long it has run:

    [2/8, 41 s] XLA on, float32, 16x16x16x32: 10 steps x 15 repeats
"""

import time


class Progress:
    """Prints one flushed line per unit of work: `[i/total, elapsed]`.

    Args:
        total: How many units the run has (the `i` of the last one).
    """

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def __call__(self, message):
        """Announces the next unit, `message` saying what it is."""
        self.done += 1
        elapsed = time.perf_counter() - self.start
        print(f"[{self.done}/{self.total}, {elapsed:.0f} s] {message}",
              flush=True)
