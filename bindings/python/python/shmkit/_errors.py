"""The exceptions shmkit raises.

Every error is a :class:`shmkit.Error`. Where Python has a built-in exception for
the same situation, shmkit's class derives from it too, so code written against
the standard library keeps working (``except FileNotFoundError`` catches
:class:`NotFound`). Each message names the object and the cause, as in Rust.
"""


class Error(Exception):
    """Base class of every shmkit error."""


class InvalidArgument(Error, ValueError):
    """A name, size, offset, timeout or option cannot be used."""


class OutOfBounds(InvalidArgument, IndexError):
    """An access ``[offset, offset + len)`` falls outside the object."""


class TooLong(InvalidArgument):
    """A message is longer than the channel's limit."""


class BufferTooSmall(InvalidArgument):
    """A receive buffer is shorter than the next message, which stays queued.

    ``needed`` is the length of that message.
    """

    needed: int = 0


class AboveMaximum(InvalidArgument):
    """A semaphore release would raise the count above the maximum."""


class NotFound(Error, FileNotFoundError):
    """No object has that name."""


class AlreadyExists(Error, FileExistsError):
    """The name is taken."""


class PermissionDenied(Error, PermissionError):
    """The OS refused access, the mapping is read-only, or the object is not trusted."""


class OutOfSpace(Error, OSError):
    """The backing store (/dev/shm or the disk) has no room for the size asked."""


class Mismatch(Error):
    """An existing object differs from what was asked (kind, size, capacity...)."""


class Corrupt(Error):
    """A header or shared state holds values shmkit never writes, or is foreign."""


class Truncated(Corrupt):
    """Another process shrank the object under this mapping."""


class InitFailed(Error):
    """A segment's creator died, failed or timed out while initialising it."""


class Timeout(Error, TimeoutError):
    """A wait ended because its timeout passed."""


class WouldBlock(Error, BlockingIOError):
    """A non-blocking call could not proceed at once."""


class Disconnected(Error, ConnectionError):
    """The peer at the other end of a channel closed its end or died."""


class Lagged(Error):
    """A broadcast subscriber fell behind; ``missed`` messages were overwritten.

    The subscriber goes on with the oldest message still held: call ``recv`` again.
    """

    missed: int = 0


class OwnerDied(Error):
    """A process died while holding the mutex.

    The lock is now yours: ``guard`` holds it. Repair the shared data, call
    ``guard.mark_consistent()``, then release it (``guard.unlock()`` or a ``with``
    block). Released without ``mark_consistent``, the next locker is told again.
    """

    guard: "object" = None


class Lost(Error):
    """Messages of a queue were lost before this receive: a receiver died while
    reading a message too long to hold (more than half the ring). Raised once, by
    the next receive of the receiver that took over; ``count`` says how many. The
    next ``recv`` goes on with the next message.
    """

    count: int = 0


class Occupied(Error):
    """A role only one process may hold (receiver, publisher...) is taken."""


class Unsupported(Error):
    """Not available on this platform."""


class Closed(Error):
    """The object was closed: ``close()`` (perhaps from another thread) ended the
    call that was waiting on it, or the call came after ``close()``."""


class Busy(Error, RuntimeError):
    """The object is in use in a way that forbids the call: a re-entrant call on
    the same thread (a nested ``with mutex:``), or a sender with an open
    reservation."""


__all__ = [
    "Error",
    "InvalidArgument",
    "OutOfBounds",
    "TooLong",
    "BufferTooSmall",
    "AboveMaximum",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "OutOfSpace",
    "Mismatch",
    "Corrupt",
    "Truncated",
    "InitFailed",
    "Timeout",
    "WouldBlock",
    "Disconnected",
    "Lagged",
    "OwnerDied",
    "Lost",
    "Occupied",
    "Unsupported",
    "Closed",
    "Busy",
]
