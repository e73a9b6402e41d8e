"""Stands in for the `aim` experiment tracker, which stylegan2-pytorch imports at the top of its module but uses
only when run with --log. bench_peers never passes --log; anything that does use it gets a clear error."""


class Session:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("aim is not installed here (bench/peers/stubs/aim.py): run stylegan2-pytorch without --log")


Run = Session
