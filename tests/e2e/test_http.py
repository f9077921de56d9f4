"""HTTP behaviour through the whole node: keep-alive, pipelining, HEAD."""
import socket

from harness import Node, check, eq


def read_responses(sock, count, timeout=5):
    sock.settimeout(timeout)
    data = b""
    responses = []
    while len(responses) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if len(rest) < length:
                break
            responses.append((head, rest[:length]))
            data = rest[length:]
    return responses


def test_keep_alive_and_pipelining_through_functions():
    with Node() as n:
        n.deploy("hello")
        n.deploy("echo")
        s = socket.create_connection(("127.0.0.1", n.port))
        req = (b"GET /fn/hello?name=a HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
               b"GET /fn/hello?name=c HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(req)
        rs = read_responses(s, 4)
        eq(len(rs), 4)
        eq(rs[0][1], b"hello, a\n")
        eq(rs[1][1], b"abc")
        eq(rs[2][1], b"hello, c\n")
        check(b'"status":"ok"' in rs[3][1], rs[3][1])
        # The same connection keeps serving.
        s.sendall(b"GET /fn/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(read_responses(s, 1)[0][1], b"hello, world\n")
        s.close()


def test_head_request():
    with Node() as n:
        n.deploy("hello")
        r = n.request("HEAD", "/fn/hello")
        eq(r.status, 200)
        eq(r.body, b"")
