"""TCP connections held across a failover (the gateway HA tests and benchmark).
  tcp-hold.py server PORT       answers each line with the peer's address and the line
  tcp-hold.py hold HOST PORT N  opens N connections, prints {"open": N, "peers": [...]} (the
                                addresses the server saw), waits for a line on stdin, then
                                tries each connection again: prints {"alive": how many answered}"""
import json
import socket
import socketserver
import sys

if sys.argv[1] == "server":

    class H(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(("%s %s\n" % (self.client_address[0], line.decode().strip())).encode())

    class S(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    S(("0.0.0.0", int(sys.argv[2])), H).serve_forever()
else:
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    socks, peers = [], set()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"x\n")
        peers.add(s.recv(100).decode().split()[0])
        socks.append(s)
    print(json.dumps({"open": len(socks), "peers": sorted(peers)}), flush=True)
    sys.stdin.readline()
    ok = 0
    for s in socks:
        try:
            s.settimeout(8)
            s.sendall(b"y\n")
            if s.recv(100):
                ok += 1
        except Exception:
            pass
    print(json.dumps({"alive": ok}), flush=True)
