"""Admission control per address: at most ``limit`` connections (the scanner's ``max_connections_per_ip``)
to one IP address at a time, across every scan of the process, however many names share that address.

Each address has a budget of ``limit`` units. An endpoint is *admitted* when its address has a unit
for it, in the order endpoints asked (FIFO); it then holds a ``Lease``: that unit is reserved for its
own connections, and it may borrow free units of its address for more connections at once. Since an
endpoint starts only once admitted, its deadline measures its own scan, never its wait for its turn;
and since its reserved unit is always its own, an admitted endpoint's connections wait at most for
each other, never for another endpoint.

    slots = AddressSlots(limit=5)
    slots.admit(ip, start)             # start(lease) is called once ip has a unit (maybe right now)
    slots.close()                      # shutdown: whoever still waits is never admitted
    with lease.connection(deadline):   # one connection; raises DeadlineExceeded at the deadline
        ...
    lease.close()                      # done: the unit goes back once its last connection ends

A unit that comes back goes first to the endpoint waiting longest for admission, else to the free
units (where an admitted endpoint's waiting connection may borrow it). ``start`` is called outside
any lock, by the thread that admits it (``admit`` or whoever gave the unit back): it should only
hand the endpoint to a worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AddressSlots", "Connection", "DeadlineExceeded", "Lease"]


class DeadlineExceeded(Exception):
    """A connection did not get a unit before its deadline, or its endpoint is already done."""


_Start = Callable[["Lease"], None]


class _Address:
    """One address's budget, under its own lock (``changed``: one lock per address, so scans of
    different addresses never wait for each other); notified whenever a unit is freed, so
    connections waiting to borrow one (or to give up on a closed lease) wake. ``retired``: idle and
    dropped from the slots' table; whoever finds it so looks the address up again."""

    def __init__(self, ip: str, limit: int) -> None:
        self.ip = ip
        self.free = limit
        self.changed = threading.Condition(threading.Lock())
        self.waiting: deque[_Start] = deque()  # never non-empty while ``free`` > 0
        self.retired = False


class AddressSlots:
    """The per-address budgets of one process (share one instance across every batch and queue)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._addresses: dict[str, _Address] = {}
        self._lock = threading.Lock()  # the table only; never held while taking an address's lock
        self._closed = False

    def admit(self, ip: str, start: _Start) -> None:
        """Call ``start`` with a lease on ``ip`` now if it has a free unit, else once one comes back
        (first come, first served). Once the slots are closed, never."""
        while True:
            with self._lock:
                if self._closed:
                    return
                address = self._addresses.get(ip)
                if address is None:
                    address = self._addresses[ip] = _Address(ip, self._limit)
            with address.changed:
                if address.retired:  # went idle and was dropped meanwhile: its successor counts
                    continue
                if self._closed:
                    return
                if address.free == 0:
                    address.waiting.append(start)
                    return
                address.free -= 1
            start(Lease(self, address))
            return

    def busiest(self) -> int:
        """Units in use at the address using most (connections open or about to be); metrics."""
        with self._lock:
            addresses = list(self._addresses.values())
        return max((self._limit - a.free for a in addresses), default=0)

    def close(self) -> None:
        """Shutdown: nobody waiting is admitted any more, now or when units come back."""
        with self._lock:
            self._closed = True
            addresses = list(self._addresses.values())
        for address in addresses:
            with address.changed:
                address.waiting.clear()

    def _give_back(self, address: _Address) -> _Start | None:
        """A unit comes back (the caller holds the address's lock). Returns the ``start`` of the
        endpoint it now admits, for the caller to call with a new lease once outside the lock; None
        if it went free."""
        if address.waiting:
            return address.waiting.popleft()
        address.free += 1
        address.changed.notify_all()
        if address.free == self._limit:  # idle: nothing holds a unit, nobody waits, so forget it
            address.retired = True  # lock order: an address's lock, then the table's (admit never nests them)
            with self._lock:
                if self._addresses.get(address.ip) is address:
                    del self._addresses[address.ip]
        return None

    def _admitted(self, address: _Address, start: _Start | None) -> None:
        if start is not None:
            start(Lease(self, address))


class Lease:
    """An admitted endpoint's hold on its address: its reserved unit plus borrowed ones, one per
    connection beyond the first. Alone at its address it runs up to ``limit`` connections at once."""

    def __init__(self, slots: AddressSlots, address: _Address) -> None:
        self._slots = slots
        self._address = address
        self._own_busy = False  # a connection runs on the reserved unit
        self._closed = False

    def connection(self, deadline: float) -> Connection:
        """A context manager holding one unit for one connection; entering it waits for a unit until
        ``deadline`` (``time.monotonic()`` clock) and raises ``DeadlineExceeded`` then, or at once
        when the lease is closed."""
        return Connection(self, deadline)

    def close(self) -> None:
        """The endpoint is done. Its reserved unit goes back as soon as its last connection on it
        ends; its connections still waiting for a unit give up. Closing twice changes nothing."""
        address = self._address
        start: _Start | None = None
        with address.changed:
            if self._closed:
                return
            self._closed = True
            if self._own_busy:  # ``_release`` gives the unit back when that connection ends
                address.changed.notify_all()
            else:
                start = self._slots._give_back(address)
        self._slots._admitted(address, start)

    def _acquire(self, deadline: float) -> bool:
        """Wait for a unit until ``deadline``: True for the reserved one, False for a borrowed one."""
        address = self._address
        with address.changed:
            while True:
                if self._closed:  # the endpoint timed out: its late connections are not made
                    raise DeadlineExceeded
                if not self._own_busy:
                    self._own_busy = True
                    return True
                if address.free > 0:
                    address.free -= 1
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded
                address.changed.wait(remaining)

    def _release(self, own: bool) -> None:
        address = self._address
        start: _Start | None = None
        with address.changed:
            if own:
                self._own_busy = False
            if own and not self._closed:
                address.changed.notify_all()  # the unit stays reserved: this endpoint's other connections may want it
            else:
                start = self._slots._give_back(address)
        self._slots._admitted(address, start)


class Connection:
    """One unit of a lease, held while the ``with`` block runs one connection. ``borrowed`` says
    whether the unit is a free one of the address rather than the lease's reserved one.

    A plain class, not ``contextlib.contextmanager``: sslyze's exceptions are frozen dataclasses,
    which a generator-based context manager fails to re-raise."""

    def __init__(self, lease: Lease, deadline: float) -> None:
        self._lease = lease
        self._deadline = deadline
        self.borrowed = False

    def __enter__(self) -> Connection:
        self.borrowed = not self._lease._acquire(self._deadline)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lease._release(not self.borrowed)
