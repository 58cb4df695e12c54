"""A throttling proxy in front of the test API server, for tests/acceptance/throttle.rs.

Listens on 127.0.0.1 (a port the kernel picks, printed as `listening <port>` on stdout),
serves TLS with the stack's apiserver certificate, and forwards every request to the real API
server with the admin client certificate, except that every fifth write (POST, PUT, PATCH,
DELETE) is answered 429 Too Many Requests with `Retry-After` and a metav1.Status body, as API
Priority and Fairness does. The number of 429s answered so far is written to the stats file.

Usage: throttle_proxy.py UPSTREAM_URL PKI_DIR STATS_FILE [EVERY] [RETRY_AFTER]
Python 3.11 standard library only; loopback only.
"""

import http.client
import json
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
PKI = sys.argv[2]
STATS = sys.argv[3]
EVERY = int(sys.argv[4]) if len(sys.argv) > 4 else 5
RETRY_AFTER = sys.argv[5] if len(sys.argv) > 5 else "1"

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}

lock = threading.Lock()
writes = 0
throttled = 0

upstream_tls = ssl.create_default_context(cafile=f"{PKI}/ca.crt")
upstream_tls.load_cert_chain(f"{PKI}/admin.crt", f"{PKI}/admin.key")


def take_turn(method):
    """True when this request is to be answered 429."""
    global writes, throttled
    if method not in WRITES:
        return False
    with lock:
        writes += 1
        if writes % EVERY != 0:
            return False
        throttled += 1
        with open(STATS, "w") as f:
            f.write(str(throttled))
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self):
        body = self.read_body()
        if take_turn(self.command):
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "reason": "TooManyRequests",
                "code": 429,
                "message": "the throttling proxy of the acceptance tests says: too many requests",
                "details": {"retryAfterSeconds": int(RETRY_AFTER)},
            }
            data = json.dumps(status).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", RETRY_AFTER)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        conn = http.client.HTTPSConnection(
            UPSTREAM.hostname, UPSTREAM.port, context=upstream_tls, timeout=300
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in WRITES:
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            length = resp.getheader("Content-Length")
            if length is not None:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            # A stream (a watch): relay it chunk by chunk as it comes.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    with open(STATS, "w") as f:
        f.write("0")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(f"{PKI}/apiserver.crt", f"{PKI}/apiserver.key")
    tls.set_alpn_protocols(["http/1.1"])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
