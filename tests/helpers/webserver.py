"""A real HTTP or HTTPS server on loopback, answering from a table of routes, for fetch tests.

With TLS it presents a certificate for the names given, issued by a throwaway CA made with
openssl(1); `ca_file` is that CA for the client to trust. Every request path is recorded.
"""
import http.server
import os
import ssl
import subprocess
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        site = self.server.site
        site.requests.append(self.path)
        status, headers, body = site.routes.get(self.path, (404, {}, b"not found\n"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Site:
    """Routes {path with query: (status, headers, body)} served on 127.0.0.1 from a thread."""

    def __init__(self, workdir, tls_names=None, port=0):
        self.routes = {}
        self.requests = []
        self.ca_file = None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.site = self
        if tls_names:
            self.ca_file, cert, key = make_certificate(str(workdir), tls_names)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls_names else "http"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path, body, status=200, content_type="application/octet-stream"):
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = (status, {"Content-Type": content_type}, body)

    def add_file(self, path, filename):
        with open(filename, "rb") as f:
            self.add(path, f.read())

    def redirect(self, path, location, status=302):
        self.routes[path] = (status, {"Location": location}, b"")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def discovery_page(*tags):
    """An HTML page with <meta name=... content=...> for each (name, content)."""
    metas = "\n".join('    <meta name="%s" content="%s">' % tag for tag in tags)
    return "<!DOCTYPE html>\n<html>\n  <head>\n%s\n  </head>\n  <body></body>\n</html>\n" % metas


def make_certificate(workdir, names):
    """(CA file, certificate, key) for DNS names plus IP 127.0.0.1, issued by a new CA."""
    directory = os.path.join(workdir, "tls")
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_cert = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr, cert = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.pem"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(["req", "-x509"] + ec + ["-days", "1", "-subj", "/CN=jetpack test CA", "-keyout", ca_key,
                                      "-out", ca_cert])
    _openssl(["req", "-new"] + ec + ["-subj", "/CN=%s" % names[0], "-keyout", key, "-out", csr])
    extensions = os.path.join(directory, "server.ext")
    with open(extensions, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=%s\n" % ",".join(["DNS:%s" % n for n in names] + ["IP:127.0.0.1"]))
    _openssl(["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
              "-extfile", extensions, "-out", cert])
    return ca_cert, cert, key


def _openssl(args):
    subprocess.run(["openssl"] + args, check=True, capture_output=True)
