"""A metrics sink that counts, for tests that check what the app reported."""


class CountingMetrics:
    def __init__(self):
        self.counts = {}
        self.timings = {}  # name -> every ms reported, in order

    def incr(self, name, count=1):
        self.counts[name] = self.counts.get(name, 0) + count

    def timing(self, name, ms):
        self.timings.setdefault(name, []).append(ms)

    def gauge(self, name, value):
        pass

    def __getitem__(self, name):
        return self.counts.get(name, 0)
