#!/usr/bin/env python3
"""image_host.py PORTFILE IMAGE — a loopback HTTP server of images and faults for
tests/test_image_urls.sh (the server's --allow-image-urls), on 127.0.0.1 (port chosen by the
system, written to PORTFILE). Paths:
  /img.png          the image                 /r1 -> /r2 -> /r3 -> /img.png  three redirects
  /r0 -> /r1 ...    four redirects            /tofile    302 to file:///etc/passwd
  /toftp            302 to ftp://127.0.0.1/x  /missing   404
  /slow             the headers, then nothing for 30 s
  /big              Content-Length of 40 MiB (the body never sent)
  /big-unsized      33 MiB of zeros with no Content-Length (the end is the connection's close)"""
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, image = sys.argv[1], sys.argv[2]
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


srv = ThreadingHTTPServer(("127.0.0.1", 0), Host)
srv.daemon_threads = True
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
