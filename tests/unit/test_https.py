"""The hub's HTTPS and login checks against a real TLS server on loopback with test certificates."""
import http.server
import ssl
import threading

import pytest

from gpuhub import https
from tlscerts import ca_pem, make_ca, make_server_cert

HOST = "hub.lab.test"


class Redirect(http.server.BaseHTTPRequestHandler):
    location = "https://github.com/login/oauth/authorize?client_id=the-id&redirect_uri=x"

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.location)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(cert_pem, key_pem, handler=Redirect):
        (tmp_path / "cert.pem").write_bytes(cert_pem)
        (tmp_path / "key.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ca(tmp_path):
    authority = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca_pem(authority))
    return authority, str(tmp_path / "ca.pem")


def check(port, cafile, hostname=HOST):
    return https.check_certificate(hostname, address="127.0.0.1", port=port, cafile=cafile)


def test_valid_certificate(serve, ca):
    authority, cafile = ca
    port = serve(*make_server_cert(HOST, authority))
    finding = check(port, cafile)
    assert finding.ok, finding
    assert "days left" in finding.message


def test_expired_certificate(serve, ca):
    authority, cafile = ca
    port = serve(*make_server_cert(HOST, authority, expired=True))
    finding = check(port, cafile)
    assert not finding.ok and "expired" in finding.message and finding.fix


def test_wrong_name(serve, ca):
    authority, cafile = ca
    port = serve(*make_server_cert("other.lab.test", authority))
    finding = check(port, cafile)
    assert not finding.ok and "mismatch" in finding.message.lower()


def test_self_signed(serve, ca):
    _, cafile = ca
    port = serve(*make_server_cert(HOST))
    finding = check(port, cafile)
    assert not finding.ok and "self-signed" in finding.message


def test_expiring_within_14_days(serve, ca):
    authority, cafile = ca
    port = serve(*make_server_cert(HOST, authority, days=5))
    finding = check(port, cafile)
    assert not finding.ok and "expires in" in finding.message


def test_nothing_listening():
    finding = https.check_certificate(HOST, address="127.0.0.1", port=1, cafile=None, timeout=2)
    assert not finding.ok and "does not answer" in finding.message


def test_login_redirects_to_github_with_the_client_id(serve, ca):
    authority, cafile = ca
    port = serve(*make_server_cert(HOST, authority))
    assert https.check_login(HOST, "the-id", address="127.0.0.1", port=port, cafile=cafile).ok
    wrong = https.check_login(HOST, "another-id", address="127.0.0.1", port=port, cafile=cafile)
    assert not wrong.ok and "client_id=the-id, expected another-id" in wrong.evidence


def test_login_without_github(serve, ca):
    authority, cafile = ca

    class Local(Redirect):
        location = "/hub/login"
    port = serve(*make_server_cert(HOST, authority), handler=Local)
    finding = https.check_login(HOST, "the-id", address="127.0.0.1", port=port, cafile=cafile)
    assert not finding.ok and "does not redirect to GitHub" in finding.message
