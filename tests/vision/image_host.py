#!/usr/bin/env python3
"""image_host.py PORTFILE IMAGE [HITS] — a loopback HTTP server of images and faults for
tests/test_image_urls.sh (the server's --allow-image-urls), on 127.0.0.1 (port chosen by the
system, written to PORTFILE) and on the same port of 127.0.0.2 and [::1] where those can be
bound (PORTFILE.2 / PORTFILE.6 say so); each request's address and path is appended to HITS.
Paths:
  /img.png          the image                 /r1 -> /r2 -> /r3 -> /img.png  three redirects
  /r0 -> /r1 ...    four redirects            /tofile    302 to file:///etc/passwd
  /toftp            302 to ftp://127.0.0.1/x  /missing   404
  /to2              302 to 127.0.0.2's /img.png   /to6   302 to [::1]'s /img.png
  /tolocalhost      302 to localhost's /img.png
  /slow             the headers, then nothing for 30 s
  /big              Content-Length of 40 MiB (the body never sent)
  /big-unsized      33 MiB of zeros with no Content-Length (the end is the connection's close)"""
import os, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, image = sys.argv[1], sys.argv[2]
hits = sys.argv[3] if len(sys.argv) > 3 else None
hits_lock = threading.Lock()
with open(image, "rb") as f:
    IMG = f.read()
REDIRECTS = {"/r0": "/r1", "/r1": "/r2", "/r2": "/r3", "/r3": "/img.png",
             "/tofile": "file:///etc/passwd", "/toftp": "ftp://127.0.0.1/x"}


class Host(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        p = self.path.split("?")[0]
        if hits:
            with hits_lock, open(hits, "a") as f:
                f.write(f"{self.server.server_address[0]} {p}\n")
        try:
            if p == "/img.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(IMG)))
                self.end_headers()
                self.wfile.write(IMG)
            elif p in REDIRECTS:
                self.send_response(302)
                self.send_header("Location", REDIRECTS[p])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif p == "/slow":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.flush()
                time.sleep(30)
            elif p == "/big":
                self.send_response(200)
                self.send_header("Content-Length", str(40 << 20))
                self.end_headers()
                self.wfile.flush()
                time.sleep(5)
            elif p == "/big-unsized":
                self.send_response(200)
                self.end_headers()
                chunk = b"\0" * (1 << 20)
                for _ in range(33):
                    self.wfile.write(chunk)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass


class Host6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


srv = ThreadingHTTPServer(("127.0.0.1", 0), Host)
port = srv.server_address[1]
REDIRECTS["/to2"] = f"http://127.0.0.2:{port}/img.png"
REDIRECTS["/to6"] = f"http://[::1]:{port}/img.png"
REDIRECTS["/tolocalhost"] = f"http://localhost:{port}/img.png"
for cls, addr, tag in ((ThreadingHTTPServer, "127.0.0.2", "2"), (Host6, "::1", "6")):
    try:
        more = cls((addr, port), Host)
    except OSError:
        continue
    more.daemon_threads = True
    threading.Thread(target=more.serve_forever, daemon=True).start()
    with open(portfile + "." + tag, "w") as f:
        f.write(str(port))
srv.daemon_threads = True
with open(portfile + ".tmp", "w") as f:
    f.write(str(port))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
