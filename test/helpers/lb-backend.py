"""A load-balancer backend for tests: HTTP/1.1 on PORT (every path answers NAME; keep-alive
honoured; /whoami adds the address it was reached at) and UDP on UPORT (answers NAME and the datagram), IPv4 and IPv6, until killed.
usage: lb-backend.py NAME PORT UPORT"""
import http.server
import socket
import socketserver
import sys
import threading

name, port, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = name.encode()
        if self.path == "/whoami":  # and the address it was reached at (a DSR VIP's, or its own)
            local = self.connection.getsockname()[0]
            body += b" " + (local[7:] if local.startswith("::ffff:") else local).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", uport))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(name.encode() + b" " + data, addr)


threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
Server(("::", port), Handler).serve_forever()
