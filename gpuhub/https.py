"""The hub from a user's side: HTTPS with a certificate that is trusted, names the host and does
not expire soon, and a login that sends users to GitHub with the configured OAuth app."""
from __future__ import annotations

import http.client
import socket
import ssl
import time
from urllib.parse import parse_qs, urlsplit

from .audit import Finding

MIN_DAYS = 14


def _context(cafile=None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


# Who renews the hub's certificate, by hub.https: the audit's check is the same in every mode
# (a TLS handshake as a browser makes it), only the advice differs.
RENEWAL = {
    "letsencrypt": "the chart's Let's Encrypt proxy renews by itself when ports 80/443 reach the server and DNS "
                   "for {hostname} points at it; see `k3s kubectl -n NAMESPACE logs deploy/autohttps`",
    "ingress": "cert-manager renews it through Traefik (ACME HTTP-01: port 80 must reach the server); see `k3s "
               "kubectl -n NAMESPACE describe certificate` and `k3s kubectl -n cert-manager logs deploy/cert-manager`",
    "certificate": "the certificate is your institution's: get a renewed one, name it in hub.tls_certificate "
                   "(and hub.tls_key), then run hub.launch",
}


def check_certificate(hostname: str, address: str = None, port: int = 443, cafile: str = None,
                      min_days: int = MIN_DAYS, timeout: float = 10, mode: str = "letsencrypt") -> Finding:
    """Connect to `address` (default: `hostname` through DNS) with SNI `hostname` and verify."""
    fix = RENEWAL[mode].format(hostname=hostname)
    where = f"{address or hostname}:{port}"
    try:
        with socket.create_connection((address or hostname, port), timeout=timeout) as raw:
            with _context(cafile).wrap_socket(raw, server_hostname=hostname) as tls:
                cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as e:
        return Finding("hub_https", False, f"https://{hostname}/ has a certificate that is not valid: "
                       f"{e.verify_message}", f"{where}: {e}", fix)
    except (OSError, ssl.SSLError) as e:
        return Finding("hub_https", False, f"https://{hostname}/ does not answer over HTTPS", f"{where}: {e}",
                       "check the proxy pod and that port 443 reaches the server")
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    days = (expires - time.time()) / 86400
    if days < min_days:
        return Finding("hub_https", False, f"the certificate of {hostname} expires in {days:.0f} day(s)",
                       f"notAfter {cert['notAfter']}", fix)
    return Finding("hub_https", True, f"valid certificate for {hostname}, {days:.0f} days left")


def check_login(hostname: str, client_id: str, address: str = None, port: int = 443, cafile: str = None,
                timeout: float = 10) -> Finding:
    """GET /hub/oauth_login must redirect to GitHub's authorize URL with our client id."""
    conn = http.client.HTTPSConnection(hostname, port, timeout=timeout, context=_context(cafile))
    if address:
        conn.sock = _context(cafile).wrap_socket(socket.create_connection((address, port), timeout=timeout),
                                                 server_hostname=hostname)
    try:
        conn.request("GET", "/hub/oauth_login", headers={"Host": hostname})
        response = conn.getresponse()
        location = response.getheader("Location", "")
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        return Finding("hub_login", False, "the login page does not answer", str(e), "check the hub pod's logs")
    finally:
        conn.close()
    url = urlsplit(location)
    got = parse_qs(url.query).get("client_id", [""])[0]
    if response.status not in (301, 302, 303, 307) or url.netloc != "github.com" or \
            not url.path.startswith("/login/oauth/authorize"):
        return Finding("hub_login", False, "login does not redirect to GitHub",
                       f"HTTP {response.status} Location: {location or '-'}",
                       "hub.config.JupyterHub.authenticator_class must be github: run hub.launch")
    if got != client_id:
        return Finding("hub_login", False, "login redirects to GitHub with another OAuth app",
                       f"client_id={got}, expected {client_id}", "run hub.launch with the current secrets")
    return Finding("hub_login", True, f"login redirects to GitHub (client_id {client_id})")
