#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 proxy for the S3 tests (Python standard library only).

    faultproxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT \
        --port-file F --stats-file S [--seed N] [--fail-rate 0.10] \
        [--reset-rate 0.02] [--delay-rate 0.05] [--delay-seconds 3] \
        [--lose-reply-rate 0] [--refuse-conditional] [--hold-file H] \
        [--spoil-listing MODE --spoil-match SUBSTRING]

Every request is relayed to the upstream unchanged: the request line and the
header block are the bytes the client sent (Host included, so a SigV4
signature still matches), the body is copied as it arrives.  Responses are
relayed unchanged too.  Both sides are kept alive; bodies may be
Content-Length, chunked or (responses only) delimited by the close.
`Expect: 100-continue` goes to the upstream, whose `100 Continue` is relayed.

One fault (or none) is drawn per request from a seeded RNG, the three rates
being slices of one uniform draw:
  fail   answer 503 SlowDown (an S3 XML error) without forwarding;
  reset  a request with a body: read about half of it, then reset the
         connection (RST: SO_LINGER on, timeout 0) without forwarding;
         a request without a body: forward it, relay the response headers and
         about half of its body, then RST (an empty body: RST before any of it);
  delay  sleep --delay-seconds, then forward.
  lose   (PUT only; another method drawn here gets no fault) forward the
         request whole, read the upstream's whole answer, then reset the
         client without relaying any of it: the object is stored and the
         client never learns it, as when a reply is lost on the way back.

--refuse-conditional answers 501 NotImplemented (an S3 XML error), without
forwarding, to every request that carries If-None-Match or If-Match: a
server without conditional writes.

--spoil-listing MODE answers every object listing (GET with list-type=2)
whose request target contains --spoil-match itself, without forwarding:
  500        HTTP 500 InternalError (retried by the client, every time);
  garbage    200 with a body that is not XML;
  truncated  200, an empty page that says more follow but gives no token;
  unsaid     200, an empty page that does not say whether more follow.
A client must take each as a failed listing, never as an empty one.

--hold-file H: a server that stops answering.  While the file H exists, a
request whose head has arrived is held: its body is not read, nothing is
forwarded, no byte is answered (the client sees a connection that went
silent).  When H is removed, held requests go on as if nothing happened
(the fault draw included).  Tests create and remove H to stall a client
for as long as they want, and watch "holding" to know that one is stalled.

The port file (the bound port and a newline) is written once listening.  The
stats file, JSON, is rewritten (atomically) after every request:
  requests        request heads received
  forwarded       sent to the upstream (includes delayed and reset_response)
  fail_503        answered 503 without forwarding
  reset           reset_request + reset_response
  reset_request   reset in mid-request-body, not forwarded
  reset_response  forwarded, reset in mid-response-body
  delayed         delayed before forwarding
  errors          ended otherwise before being forwarded (client went away,
                  unparsable head, upstream unreachable: 502)
  lost_reply      PUTs forwarded whose answer was dropped (also in forwarded)
  refused_conditional  answered 501 for a conditional header, not forwarded
  spoiled_listing  listings answered by --spoil-listing, not forwarded
  held            requests held by --hold-file (they go on afterwards)
  holding         requests held right now
  status_NNN      answers relayed to the client, by status code
Once every client is done:
  requests == forwarded + fail_503 + reset_request + refused_conditional
              + spoiled_listing + errors.
SIGTERM (or SIGINT) closes the listener, writes the stats and exits 0.
"""

import argparse
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time

SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                 b'<Error><Code>SlowDown</Code>'
                 b'<Message>Please reduce your request rate.</Message></Error>')
MAX_HEAD = 64 * 1024
IO_TIMEOUT = 300.0  # seconds of silence on either side before giving up a connection


class Closed(Exception):
    """The peer closed the connection (or the stream ended early)."""


class Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def head(self):
        """The bytes of a head up to and including the blank line; None on a
        clean close before any byte of it."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                h, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                return h
            if len(self.buf) > MAX_HEAD:
                raise ValueError("head too long")
            try:
                self._fill()
            except Closed:
                if self.buf:
                    raise
                return None

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return ln
            if len(self.buf) > MAX_HEAD:
                raise ValueError("line too long")
            self._fill()

    def some(self, limit):
        """Up to limit bytes (at least one)."""
        if not self.buf:
            self._fill()
        out, self.buf = self.buf[:limit], self.buf[limit:]
        return out

    def pending(self):
        return bool(self.buf)


def parse_head(raw):
    """(first line as str, {lower-case name: value}) of a request or response head."""
    lines = raw[:-4].split(b"\r\n")
    first = lines[0].decode("latin-1")
    fields = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if not sep:
            raise ValueError("bad header line")
        key = name.strip().decode("latin-1").lower()
        val = value.strip().decode("latin-1")
        fields[key] = fields[key] + ", " + val if key in fields else val
    return first, fields


def tokens(fields, name):
    return [t.strip().lower() for t in fields.get(name, "").split(",") if t.strip()]


def body_kind(fields):
    """('chunked', None) or ('length', n) or (None, None) when no framing is given."""
    if "chunked" in tokens(fields, "transfer-encoding"):
        return "chunked", None
    if "content-length" in fields:
        n = int(fields["content-length"].split(",")[0])
        if n < 0:
            raise ValueError("negative Content-Length")
        return "length", n
    return None, None


def copy_length(reader, n, out):
    while n > 0:
        data = reader.some(min(n, 65536))
        n -= len(data)
        if out is not None:
            out.sendall(data)


def copy_chunked(reader, out):
    """Relay a chunked body byte for byte, trailers included."""
    while True:
        ln = reader.line()
        if out is not None:
            out.sendall(ln)
        size = int(ln.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the blank line
                t = reader.line()
                if out is not None:
                    out.sendall(t)
                if t == b"\r\n":
                    return
        copy_length(reader, size + 2, out)


def reset(sock):
    """Close with a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Proxy:
    def __init__(self, args):
        self.args = args
        self.upstream = parse_addr(args.upstream)
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.stats = dict(requests=0, forwarded=0, fail_503=0, reset=0,
                          reset_request=0, reset_response=0, delayed=0, errors=0,
                          lost_reply=0, refused_conditional=0, spoiled_listing=0)
        self.stopping = False

    # ---- shared state
    def draw(self):
        with self.lock:
            return self.rng.random()

    def count(self, *names):
        with self.lock:
            for n in names:
                self.stats[n] = self.stats.get(n, 0) + 1
            self.write_stats_locked()

    def write_stats_locked(self):
        path = self.args.stats_file
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.stats, f, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

    def write_stats(self):
        with self.lock:
            self.write_stats_locked()

    def hold(self):
        """--hold-file: wait while the file exists.  False if the proxy
        stops meanwhile (the request is then dropped)."""
        with self.lock:
            self.stats["held"] = self.stats.get("held", 0) + 1
            self.stats["holding"] = self.stats.get("holding", 0) + 1
            self.write_stats_locked()
        try:
            while os.path.exists(self.args.hold_file) and not self.stopping:
                time.sleep(0.02)  # how often a held request looks at the hold file
        finally:
            with self.lock:
                self.stats["holding"] -= 1
                self.write_stats_locked()
        return not self.stopping

    def fault(self):
        """None, 'fail', 'reset', 'delay' or 'lose' for one request."""
        a = self.args
        r = self.draw()
        if r < a.fail_rate:
            return "fail"
        if r < a.fail_rate + a.reset_rate:
            return "reset"
        if r < a.fail_rate + a.reset_rate + a.delay_rate:
            return "delay"
        if r < a.fail_rate + a.reset_rate + a.delay_rate + a.lose_reply_rate:
            return "lose"
        return None

    # ---- one client connection
    def serve(self, client):
        conn = {"client": client, "up": None}
        try:
            client.settimeout(IO_TIMEOUT)
            creader = Reader(client)
            while not self.stopping:
                try:
                    raw = creader.head()
                except (ValueError, OSError, Closed):
                    raw = None
                if raw is None:
                    break
                self.count("requests")
                settled = []  # the outcome counted for this request, if any

                def settle(*names):
                    self.count(*names)
                    settled.append(names[0])
                try:
                    again = self.request(raw, creader, conn, settle)
                except (Closed, OSError, ValueError):
                    if not settled:
                        self.count("errors")
                    break
                if not again:
                    break
        finally:
            if conn["up"] is not None:
                conn["up"][0].close()
            if conn["client"] is not None:
                close_gently(conn["client"])

    def request(self, raw, creader, conn, settle):
        """Handle one request whose head is raw.  True if the client
        connection can take another request."""
        client = conn["client"]
        try:
            line, fields = parse_head(raw)
            method, target, version = line.split(" ", 2)
            kind, length = body_kind(fields)
        except ValueError:
            settle("errors")
            send_simple(client, 400, "Bad Request", b"", close=True)
            return False
        if self.args.hold_file and os.path.exists(self.args.hold_file) and not self.hold():
            raise Closed()
        has_body = kind == "chunked" or (kind == "length" and length > 0)
        expect = "100-continue" in tokens(fields, "expect")
        ctoks = tokens(fields, "connection")
        keep = ("close" not in ctoks and
                (version.strip() != "HTTP/1.0" or "keep-alive" in ctoks))

        if (self.args.spoil_listing and method == "GET" and "list-type=2" in target
                and self.args.spoil_match in target):
            send_body(creader, kind, length, None)
            settle("spoiled_listing")
            mode = self.args.spoil_listing
            if mode == "500":
                send_error(client, 500, "Internal Server Error", "InternalError",
                           "We encountered an internal error. Please try again.", close=not keep)
            else:
                body = {"garbage": b"<<<this is not XML",
                        "truncated": b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>'
                                     b"<IsTruncated>true</IsTruncated></ListBucketResult>",
                        "unsaid": b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>'
                                  b"<KeyCount>0</KeyCount></ListBucketResult>"}[mode]
                send_simple(client, 200, "OK", body, close=not keep, ctype="application/xml")
            return keep
        if self.args.refuse_conditional and ("if-none-match" in fields or "if-match" in fields):
            if expect and has_body:
                settle("refused_conditional")
                send_error(client, 501, "Not Implemented", "NotImplemented",
                           "A header you provided implies functionality that is not implemented.",
                           close=True)
                return False
            send_body(creader, kind, length, None)
            settle("refused_conditional")
            send_error(client, 501, "Not Implemented", "NotImplemented",
                       "A header you provided implies functionality that is not implemented.",
                       close=not keep)
            return keep
        f = self.fault()
        if f == "lose" and not (method == "PUT" and has_body):
            f = None
        if f == "fail":
            if expect and has_body:
                # a final answer before the body: the client will not send
                # it, so this connection cannot be reused
                settle("fail_503")
                send_slowdown(client, close=True)
                return False
            send_body(creader, kind, length, None)
            settle("fail_503")
            send_slowdown(client, close=not keep)
            return keep
        if f == "reset" and has_body:
            if expect:
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            want = max(length // 2 if kind == "length" else 1, 1)
            got = 0
            try:
                while got < want:
                    got += len(creader.some(want - got))
            except (Closed, OSError):
                pass
            settle("reset", "reset_request")
            reset(client)
            conn["client"] = None
            return False
        if f == "delay":
            time.sleep(self.args.delay_seconds)
            self.count("delayed")

        up = conn["up"]
        if up is not None and stale(up):
            up[0].close()
            up = conn["up"] = None
        if up is None:
            try:
                s = socket.create_connection(self.upstream, timeout=30)
            except OSError as e:
                settle("errors")
                send_simple(client, 502, "Bad Gateway",
                            ("upstream %s: %s\n" % (self.args.upstream, e)).encode(),
                            close=True)
                return False
            s.settimeout(IO_TIMEOUT)
            up = conn["up"] = (s, Reader(s))
        usock, ureader = up
        settle("forwarded")
        usock.sendall(raw)
        reset_resp = f == "reset"
        lose = f == "lose"
        if reset_resp or lose:
            conn["client"] = None  # relay() resets it (or it is closed on error)
        try:
            ok, keep_up, keep_client = self.relay(
                creader, client, usock, ureader, method, kind, length,
                expect and has_body, reset_resp, lose)
        except BaseException:
            if reset_resp or lose:
                client.close()
            raise
        if reset_resp:
            self.count("reset", "reset_response")
        if lose:
            self.count("lost_reply")
        if not keep_up:
            usock.close()
            conn["up"] = None
        return ok and keep and keep_client

    def relay(self, creader, client, usock, ureader, method, kind, length, expect, reset_resp,
              lose=False):
        """Relay the request body and the response.  Returns (completed,
        upstream reusable, client reusable).  With lose, the final answer is
        read from the upstream and dropped, and the client is reset."""
        body_sent = not expect
        if not expect:
            send_body(creader, kind, length, usock)
        while True:
            rhead = ureader.head()
            if rhead is None:
                raise Closed()
            status_line, rfields = parse_head(rhead)
            status = int(status_line.split(" ", 2)[1])
            if 100 <= status < 200 and status != 101:
                client.sendall(rhead)
                if status == 100 and not body_sent:
                    send_body(creader, kind, length, usock)
                    body_sent = True
                continue
            break
        rkind, rlength = body_kind(rfields)
        no_body = (method == "HEAD" or status in (204, 304))
        up_close = "close" in tokens(rfields, "connection")
        if not no_body and rkind is None:
            rkind = "eof"
        if lose:
            if not no_body and rkind == "length":
                copy_length(ureader, rlength, None)
            elif not no_body and rkind == "chunked":
                copy_chunked(ureader, None)
            reset(client)
            return False, rkind != "eof" and not up_close and body_sent, False
        if reset_resp:
            if no_body or (rkind == "length" and rlength == 0):
                reset(client)
                return False, False, False
            client.sendall(rhead)
            if rkind == "length":
                copy_length(ureader, rlength // 2, client)
            elif rkind == "chunked":
                ln = ureader.line()
                client.sendall(ln)
                size = int(ln.split(b";")[0].strip(), 16)
                copy_length(ureader, size // 2, client)
            else:
                client.sendall(ureader.some(65536))
            reset(client)
            return False, False, False
        self.count("status_%d" % status)
        client.sendall(rhead)
        if no_body:
            pass
        elif rkind == "length":
            copy_length(ureader, rlength, client)
        elif rkind == "chunked":
            copy_chunked(ureader, client)
        else:  # delimited by the close of the upstream
            try:
                while True:
                    client.sendall(ureader.some(65536))
            except Closed:
                pass
            return True, False, False
        # a final answer that came before the body was asked for: the client
        # may or may not send the body now, neither side can be trusted again
        if not body_sent:
            return True, False, False
        return True, not up_close, not up_close

    # ---- main loop
    def run(self):
        host, port = parse_addr(self.args.listen)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(128)
        ls.settimeout(0.2)  # how often the accept loop looks at the stop flag
        self.write_stats()
        pf = self.args.port_file
        tmp = "%s.tmp.%d" % (pf, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % ls.getsockname()[1])
        os.replace(tmp, pf)

        def stop(_sig, _frame):
            self.stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self.stopping:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()
        ls.close()
        self.write_stats()


def close_gently(sock):
    """Close after the client has seen all we sent: a close with unread bytes
    queued (a body the client sent after an early final answer) would go out
    as an RST and could destroy the answer in the client's receive buffer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


def send_body(creader, kind, length, usock):
    """Copy a request body to usock (None: read and drop it)."""
    if kind == "length":
        copy_length(creader, length, usock)
    elif kind == "chunked":
        copy_chunked(creader, usock)


def stale(up):
    """An idle upstream connection that is readable has been closed (or is
    sending junk): do not reuse it."""
    try:
        r, _, _ = select.select([up[0]], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r) or up[1].pending()


def send_simple(sock, code, reason, body, close, ctype="text/plain"):
    head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (code, reason, ctype, len(body), "Connection: close\r\n" if close else ""))
    try:
        sock.sendall(head.encode() + body)
    except OSError:
        pass


def send_error(sock, code, reason, s3code, message, close):
    """An S3 XML error answer."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>'
            % (s3code, message)).encode()
    send_simple(sock, code, reason, body, close, "application/xml")


def send_slowdown(sock, close):
    head = ("HTTP/1.1 503 Slow Down\r\n"
            "Content-Type: application/xml\r\n"
            "Content-Length: %d\r\n"
            "x-amz-request-id: faultproxy\r\n"
            "Date: %s\r\n"
            "%s\r\n" % (len(SLOWDOWN_BODY),
                        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                        "Connection: close\r\n" if close else ""))
    sock.sendall(head.encode() + SLOWDOWN_BODY)


def parse_addr(s):
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host, int(port)


def rate(s):
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("a rate is between 0 and 1")
    return v


def main():
    p = argparse.ArgumentParser(description="fault-injecting HTTP/1.1 proxy for the S3 tests")
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0: any free port)")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    p.add_argument("--port-file", required=True, help="written with the bound port once listening")
    p.add_argument("--stats-file", required=True, help="JSON counters, rewritten after every request")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fail-rate", type=rate, default=0.10)
    p.add_argument("--reset-rate", type=rate, default=0.02)
    p.add_argument("--delay-rate", type=rate, default=0.05)
    p.add_argument("--delay-seconds", type=float, default=3.0)
    p.add_argument("--lose-reply-rate", type=rate, default=0.0)
    p.add_argument("--refuse-conditional", action="store_true")
    p.add_argument("--spoil-listing", choices=["500", "garbage", "truncated", "unsaid"])
    p.add_argument("--spoil-match", default="", help="only listings whose request target contains this")
    p.add_argument("--hold-file", help="while this file exists, requests are held unanswered")
    args = p.parse_args()
    if args.fail_rate + args.reset_rate + args.delay_rate + args.lose_reply_rate > 1.0 + 1e-9:
        p.error("fail + reset + delay + lose rates exceed 1")
    parse_addr(args.upstream)
    Proxy(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
