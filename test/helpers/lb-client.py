"""A load-balancer client for tests; prints one JSON line.
  lb-client.py spread ADDR PORT N         N requests, each on a new TCP connection: {names, errors}
  lb-client.py hold ADDR PORT SECONDS     one keep-alive connection: a request, SECONDS, another
                                          on the same connection: {first, second} (or error)
  lb-client.py udp ADDR PORT              one datagram: {source: [addr, port], answer}
  lb-client.py whoami ADDR PORT           GET /whoami: {answer: "NAME LOCAL-ADDRESS", peer: [addr, port]}
                                          (the backend's name and the address it was reached at)"""
import json
import socket
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET


def request(s, path="/"):
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(4096)
    return body.decode()


def connect():
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect((addr, port))
    return s


if mode == "spread":
    names, errors = {}, 0
    for _ in range(int(sys.argv[4])):
        try:
            with connect() as s:
                n = request(s)
                names[n] = names.get(n, 0) + 1
        except OSError:
            errors += 1
    print(json.dumps({"names": names, "errors": errors}))
elif mode == "hold":
    try:
        with connect() as s:
            first = request(s)
            print(json.dumps({"first": first}), flush=True)
            time.sleep(float(sys.argv[4]))
            print(json.dumps({"first": first, "second": request(s)}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
elif mode == "whoami":
    try:
        with connect() as s:
            peer = s.getpeername()
            print(json.dumps({"answer": request(s, "/whoami"), "peer": [peer[0], peer[1]]}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
elif mode == "udp":
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"hello", (addr, port))
    try:
        data, src = s.recvfrom(2048)
        print(json.dumps({"source": [src[0], src[1]], "answer": data.decode()}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
