# An HTTP/1.1 server that is not ours (Python's http.server) for the webhook client's tests.
# Each POST is logged as one JSON line (connection's client port, path, headers, body) to the file
# named by argv[2]; the path picks how it answers. Listens on 127.0.0.1:argv[1].
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(sys.argv[2], "a") as log:
            log.write(json.dumps({"port": self.client_address[1], "path": self.path,
                                  "headers": dict(self.headers.items()), "body": body.decode()}) + "\n")
        path = self.path.split("?")[0]
        if path == "/hang":
            time.sleep(30)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
        elif path == "/close":
            self.send_response(202)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/drop-after":
            # answers, keeps quiet about closing, then closes: the next POST on it must go anew
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.wfile.flush()
            time.sleep(0.2)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif path == "/huge-head":
            self.send_response(200)
            self.send_header("X-Filler", "x" * 20000)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/fail":
            self.send_response(500)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"nope")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
