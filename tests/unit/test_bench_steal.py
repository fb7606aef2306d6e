"""bench.compare's reading of the CPU time a hypervisor gave to other guests."""
from bench.compare.__main__ import cpu_ticks, steal_pct


def test_steal_is_the_share_of_stolen_ticks_between_two_readings():
    assert steal_pct((1000, 10), (2000, 60)) == 5.0
    assert steal_pct((1000, 10), (1000, 10)) == 0.0


def test_the_ticks_of_this_machine_read_and_grow():
    first = cpu_ticks()
    sum(range(2_000_000))
    second = cpu_ticks()
    assert 0 <= first[1] <= first[0]
    assert second[0] >= first[0] and second[1] >= first[1]
