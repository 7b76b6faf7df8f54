"""Admission control per address, on its own: threads and clocks only, no network."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from services.scanner.admission import AddressSlots, Connection, DeadlineExceeded, Lease

IP, OTHER_IP = "192.0.2.1", "192.0.2.2"


class Admitted:
    """Records the leases ``admit`` hands out, in order, keyed by the caller's label."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def start(self, label: str) -> Callable[[Lease], None]:
        def started(lease: Lease) -> None:
            with self._lock:
                self.order.append(label)
                self.leases[label] = lease

        return started


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def opened(lease: Lease, deadline: float) -> Connection:
    """Enter a connection and keep it open (the test ends it with ``ended``)."""
    return lease.connection(deadline).__enter__()


def ended(connection: Connection) -> None:
    connection.__exit__(None, None, None)


def test_an_address_admits_endpoints_in_turn_and_lends_its_spare_connections() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    for n in range(3):
        slots.admit(IP, admitted.start(str(n)))
    assert admitted.order == ["0", "1"]  # one unit each; the third waits for a unit
    first, second = admitted.leases["0"], admitted.leases["1"]
    own = opened(first, soon())
    assert not own.borrowed  # its own unit
    with pytest.raises(DeadlineExceeded):  # nothing spare to borrow: second holds the other unit
        opened(first, soon(0.05))
    first.close()  # done (say, timed out) while a connection is still open: the unit stays taken
    assert admitted.order == ["0", "1"]
    with pytest.raises(DeadlineExceeded):  # and a done endpoint makes no new connections
        opened(first, soon())
    ended(own)  # that connection ends: its unit goes to the endpoint waiting
    assert admitted.order == ["0", "1", "2"]
    second.close()
    third = admitted.leases["2"]
    a, b = opened(third, soon()), opened(third, soon())
    assert not a.borrowed and b.borrowed  # alone: borrows the spare
    ended(b)
    ended(a)
    third.close()
    slots.admit(IP, admitted.start("3"))
    assert admitted.order == ["0", "1", "2", "3"]


def test_endpoints_are_admitted_first_come_first_served() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    labels = [f"e{n}" for n in range(12)]
    for label in labels:
        slots.admit(IP, admitted.start(label))
    assert admitted.order == labels[:2]
    # finish them out of order: whoever finishes, the next unit goes to the one waiting longest
    for done in ["e1", "e0", "e3", "e2", "e5", "e4", "e7", "e6", "e9", "e8"]:
        admitted.leases[done].close()
    assert admitted.order == labels


def test_each_address_has_its_own_budget() -> None:
    slots = AddressSlots(1)
    admitted = Admitted()
    slots.admit(IP, admitted.start("a1"))
    slots.admit(IP, admitted.start("a2"))
    slots.admit(OTHER_IP, admitted.start("b1"))  # a full address never holds up another one
    assert admitted.order == ["a1", "b1"]
    admitted.leases["b1"].close()
    assert admitted.order == ["a1", "b1"]  # b's unit is b's: a2 still waits for a1
    admitted.leases["a1"].close()
    assert admitted.order == ["a1", "b1", "a2"]


def test_an_endpoint_alone_uses_the_whole_budget_and_no_more() -> None:
    slots = AddressSlots(3)
    admitted = Admitted()
    slots.admit(IP, admitted.start("only"))
    lease = admitted.leases["only"]
    connections = [opened(lease, soon()) for _ in range(3)]
    assert [c.borrowed for c in connections] == [False, True, True]
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        opened(lease, soon(0.1))
    assert time.monotonic() - started >= 0.09
    for connection in connections:
        ended(connection)
    lease.close()
    for n in range(3):  # every unit came back: three new endpoints start at once
        slots.admit(IP, admitted.start(str(n)))
    assert admitted.order == ["only", "0", "1", "2"]


def test_a_closed_lease_gives_its_unit_back_when_its_last_connection_ends() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    slots.admit(IP, admitted.start("a"))
    a = admitted.leases["a"]
    own, borrowed = opened(a, soon()), opened(a, soon())
    slots.admit(IP, admitted.start("b"))
    slots.admit(IP, admitted.start("c"))
    assert admitted.order == ["a"]
    ended(borrowed)  # a borrowed unit goes back at once, to the endpoint waiting longest
    assert admitted.order == ["a", "b"]
    a.close()
    assert admitted.order == ["a", "b"]  # its own connection still runs on the reserved unit
    ended(own)
    assert admitted.order == ["a", "b", "c"]


def test_closing_twice_gives_back_one_unit() -> None:
    slots = AddressSlots(1)
    admitted = Admitted()
    for label in ("a", "b", "c"):
        slots.admit(IP, admitted.start(label))
    admitted.leases["a"].close()
    admitted.leases["a"].close()
    assert admitted.order == ["a", "b"]


def test_a_waiting_connection_gives_up_at_its_deadline() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    slots.admit(IP, admitted.start("a"))
    slots.admit(IP, admitted.start("b"))
    a = admitted.leases["a"]
    own = opened(a, soon())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):  # b holds the other unit, so there is nothing to borrow
        opened(a, started + 0.2)
    waited = time.monotonic() - started
    assert 0.19 <= waited < 1.0
    ended(own)


def test_a_waiting_connection_gets_a_unit_freed_before_its_deadline() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    slots.admit(IP, admitted.start("a"))
    slots.admit(IP, admitted.start("b"))
    a, b = admitted.leases["a"], admitted.leases["b"]
    own = opened(a, soon())
    got: list[Connection] = []
    waiter = threading.Thread(target=lambda: got.append(opened(a, soon(5))))
    waiter.start()
    time.sleep(0.1)
    assert not got  # still waiting for a unit
    b.close()  # b is done and nobody waits for admission: its unit goes free, a borrows it
    waiter.join(timeout=2)
    assert len(got) == 1 and got[0].borrowed
    ended(got[0])
    ended(own)


def test_closing_a_lease_wakes_its_waiting_connections_and_they_give_up() -> None:
    slots = AddressSlots(2)
    admitted = Admitted()
    slots.admit(IP, admitted.start("a"))
    slots.admit(IP, admitted.start("b"))
    a = admitted.leases["a"]
    own = opened(a, soon())
    failures: list[BaseException] = []

    def wait_for_a_unit() -> None:
        try:
            opened(a, soon(30))
        except DeadlineExceeded as exc:
            failures.append(exc)

    waiter = threading.Thread(target=wait_for_a_unit)
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    a.close()  # the endpoint timed out: its late connection is not made, long before its deadline
    waiter.join(timeout=2)
    assert len(failures) == 1 and time.monotonic() - started < 1.0
    ended(own)


def test_many_threads_never_exceed_the_limit_per_address() -> None:
    """Endpoints on two addresses, each running several connections at once on its own threads:
    counted at every connection, an address never has more than ``limit`` open, nor more than
    ``limit`` endpoints in progress, and every endpoint and connection gets its turn."""
    limit, endpoints, connections_each = 3, 30, 4
    slots = AddressSlots(limit)
    lock = threading.Lock()
    open_now: Counter[str] = Counter()
    open_peak: Counter[str] = Counter()
    running_now: Counter[str] = Counter()
    running_peak: Counter[str] = Counter()
    made: Counter[str] = Counter()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def connect(ip: str, lease: Lease) -> None:
        with lease.connection(soon(30)):
            with lock:
                open_now[ip] += 1
                open_peak[ip] = max(open_peak[ip], open_now[ip])
                made[ip] += 1
            time.sleep(0.002)
            with lock:
                open_now[ip] -= 1

    def scan(ip: str, lease: Lease) -> None:
        try:
            workers = [threading.Thread(target=connect, args=(ip, lease)) for _ in range(connections_each)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            with lock:
                running_now[ip] -= 1
            lease.close()

    def start(ip: str) -> Callable[[Lease], None]:
        def started(lease: Lease) -> None:
            with lock:
                running_now[ip] += 1
                running_peak[ip] = max(running_peak[ip], running_now[ip])
            thread = threading.Thread(target=scan, args=(ip, lease))
            with lock:
                threads.append(thread)
            thread.start()

        return started

    def admit_all(ip: str) -> None:
        for _ in range(endpoints):
            slots.admit(ip, start(ip))

    admitters = [threading.Thread(target=admit_all, args=(ip,)) for ip in (IP, OTHER_IP)]
    for admitter in admitters:
        admitter.start()
    for admitter in admitters:
        admitter.join()
    deadline = soon(30)
    while time.monotonic() < deadline:
        with lock:
            pending = [t for t in threads if t.is_alive()]
            total = len(threads)
        if not pending and total == 2 * endpoints:
            break
        time.sleep(0.01)
    assert not errors
    assert len(threads) == 2 * endpoints  # every endpoint was admitted
    assert made == {IP: endpoints * connections_each, OTHER_IP: endpoints * connections_each}
    for ip in (IP, OTHER_IP):
        assert open_peak[ip] <= limit, ip
        assert running_peak[ip] <= limit, ip
        assert open_peak[ip] >= 2, ip  # the limit was actually contended, not trivially met


def test_an_address_that_goes_idle_and_comes_back_at_once_keeps_one_budget() -> None:
    """Each address has its own lock: one going idle is dropped from the table while other threads
    admit on it. Hammered from 8 threads, the address never has more than ``limit`` leases at
    once (a second budget for the same address would allow more) and the table ends empty."""
    limit, rounds = 2, 300
    slots = AddressSlots(limit)
    lock = threading.Lock()
    held = {"now": 0, "peak": 0, "done": 0}
    all_done = threading.Event()

    def started(lease: Lease) -> None:
        with lock:
            held["now"] += 1
            held["peak"] = max(held["peak"], held["now"])
        with lock:
            held["now"] -= 1
            held["done"] += 1
            if held["done"] == 8 * rounds:
                all_done.set()
        lease.close()  # may admit a waiting one on this very thread

    def hammer() -> None:
        for _ in range(rounds):
            slots.admit("192.0.2.7", started)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all_done.wait(30), f"only {held['done']} of {8 * rounds} admitted"
    assert held["peak"] <= limit
    assert slots.busiest() == 0 and not slots._addresses, "idle addresses are forgotten"
