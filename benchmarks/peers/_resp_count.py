"""Counting the commands in a RESP buffer a client packed itself (leaseq's ack
transaction goes out as one buffer of several commands).

Standalone, with no imports: ``peers/leaseq_adapter.py`` imports it, and
``benchmarks/controls.py`` puts its source into the child it runs inside a baseline
checkout, where the benchmarks package is not on the path."""


def resp_commands(buf: bytes | bytearray) -> int:
    """Commands in a RESP buffer a client packed itself (leaseq's ack transaction)."""
    n = i = 0
    while i < len(buf):
        end = buf.index(b"\r\n", i)
        args = int(buf[i + 1:end])
        i = end + 2
        for _ in range(args):
            end = buf.index(b"\r\n", i)
            i = end + 2 + int(buf[i + 1:end]) + 2
        n += 1
    return n
