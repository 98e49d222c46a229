#!/usr/bin/env python3
"""Scenario 10's slow readers (`make bench`, issue 11 §1): N connections that each ask for a big
file and then take a few bytes every few seconds, as `slowhttptest -X` does, with one difference
that matters on loopback: each connection advertises a small MSS (TCP_MAXSEG before connect).

Why not slowhttptest -X itself: loopback's 64 KiB MSS lets the kernel grow a server socket's send
buffer to several MiB, so a slow reader either takes its whole response into kernel buffers (a
100 KiB file: the server is done with it at once, nothing is held) or, with a file big enough to
hold the server, costs ~3 MiB of kernel memory: 3,000 of them would run the whole machine into
net.ipv4.tcp_mem's hard limit, which stalls every TCP sender on it. With a 536-byte MSS (what a
remote attacker's path gives, within a factor of 3) the server's send buffer stays at tens of
KiB, so 3,000 connections cost ~100 MiB of kernel memory and each one does hold the server.

Bounded: at most --conns sockets, new ones at --rate per second, and the process exits by itself
after --duration seconds (the caller also stops it by pid). 127.0.0.1 only. Standard library only.
Prints one line at the end: `slowread connected N failed N closed N bytes N`.
"""

import argparse
import errno
import select
import socket
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--rate", type=int, default=1000, help="new connections per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds, then exit")
    ap.add_argument("--read-bytes", type=int, default=32, help="bytes taken per read (slowhttptest -z)")
    ap.add_argument("--read-every", type=float, default=5.0, help="seconds between reads (-n)")
    ap.add_argument("--rcvbuf", type=int, default=1024, help="SO_RCVBUF, set before connect (-w/-y)")
    ap.add_argument("--mss", type=int, default=536, help="TCP_MAXSEG, set before connect")
    args = ap.parse_args()

    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    ep = select.epoll()
    socks = {}  # fd -> [socket, connected, next read time]
    connected = failed = closed = got = 0
    start = time.monotonic()
    end = start + args.duration
    opened = 0
    next_scan = start

    def drop(fd):
        s = socks.pop(fd)[0]
        try:
            ep.unregister(fd)
        except OSError:
            pass
        s.close()

    while True:
        now = time.monotonic()
        if now >= end:
            break
        # Open what the rate allows by now.
        due = min(args.conns, int((now - start) * args.rate) + 1)
        while opened < due:
            opened += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, args.mss)
                s.setblocking(False)
                rc = s.connect_ex(("127.0.0.1", args.port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, "connect")
            except OSError:
                failed += 1
                s.close()
                continue
            socks[s.fileno()] = [s, False, 0.0]
            ep.register(s.fileno(), select.EPOLLOUT)
        for fd, ev in ep.poll(0.05, maxevents=1024):
            entry = socks.get(fd)
            if entry is None:
                continue
            s = entry[0]
            if not entry[1]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err or ev & (select.EPOLLERR | select.EPOLLHUP):
                    failed += 1
                    drop(fd)
                    continue
                try:
                    s.send(request)
                except OSError:
                    failed += 1
                    drop(fd)
                    continue
                entry[1] = True
                entry[2] = time.monotonic() + args.read_every
                connected += 1
                # From now on the reads are paced by the clock, not by readiness.
                ep.unregister(fd)
        now = time.monotonic()
        if now < next_scan:
            continue
        next_scan = now + 0.25
        for fd in [fd for fd, e in socks.items() if e[1] and e[2] <= now]:
            entry = socks[fd]
            entry[2] = now + args.read_every
            try:
                data = entry[0].recv(args.read_bytes)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                del socks[fd]
                entry[0].close()
                continue
            got += len(data)
    for fd in list(socks):
        socks[fd][0].close()
    ep.close()
    print(f"slowread connected {connected} failed {failed} closed {closed} bytes {got}", flush=True)


if __name__ == "__main__":
    main()
