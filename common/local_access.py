"""Who may talk to a local server: the Host allow-list, the cross-site rule and the access token.

One set of rules for every local page (the labeller, the studio), decided from a request's
headers alone, so ``common.localserver`` applies them before any route runs:

* **Host allow-list** (DNS rebinding): bound to loopback, ``Host`` must name loopback; bound
  beyond it, ``Host`` must name this machine (its names, the address the connection arrived
  at, loopback for SSH tunnels) or a name given with ``--allow-host``.
* **Cross-site rule** (any web page the user has open could otherwise drive the server): a
  request whose ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site`` (another port of the same
  host is same-site), or whose ``Origin`` is not the server's own, is refused. ``same-origin``,
  ``none`` (the user typed the URL) and requests without these headers (curl, scripts, other
  tools' checks) pass. The page's own static files are exempt (a link from elsewhere may open it).
* **Token** (only when bound beyond loopback): the printed URL carries ``?token=...``; opening
  it stores the token in an HttpOnly, SameSite=Strict cookie (the server redirects to the same
  URL without it), so the page sends it with every request without a line of page code. Scripts
  send the ``X-Local-Token`` header. On loopback no token is needed and nothing changes.

The checks return a refusal message (``None`` = allowed); the server turns it into a 403.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_HEADER = "X-Local-Token"
TOKEN_QUERY_KEY = "token"
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header, lower-case, without port, brackets or a trailing dot."""
    host = host_header.strip()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return normal_address(name.rstrip(".").lower())


def normal_address(name: str) -> str:
    """An IP address in one spelling (IPv4-mapped IPv6 as IPv4, no zone); names unchanged."""
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return name
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def host_header_names_loopback(host: str) -> bool:
    """``Host: localhost:8765`` / ``127.0.0.1`` / ``[::1]:80`` -> True; anything else False."""
    return host_name(host) in LOOPBACK_NAMES


def reachable_address() -> str:
    """This machine's address on its default route (nothing is sent), else its host name."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect only picks the route
        return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()
    finally:
        probe.close()


def machine_names(bind_host: str) -> frozenset[str]:
    """Names and addresses that mean this machine: loopback, host names, resolved and bound addresses."""
    names = set(LOOPBACK_NAMES)
    hostname = socket.gethostname()
    for name in (hostname, socket.getfqdn(), reachable_address()):
        name = normal_address(name.rstrip(".").lower())
        names.add(name)
        if "." in name and not _is_ip(name):
            names.add(name.split(".", 1)[0])
    try:
        for info in socket.getaddrinfo(hostname, None):
            names.add(normal_address(str(info[4][0])))
    except OSError:
        pass
    if bind_host not in ("", "0.0.0.0", "::"):
        names.add(normal_address(bind_host.lower()))
    return frozenset(names)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def check_allow_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """``--allow-host`` values as given; ValueError for anything that is not a bare name or address."""
    hosts = tuple(hosts)
    for host in hosts:
        if not host or any(c in host for c in "/ \t@?#") or host_name(host) != host_name(host.strip()):
            raise ValueError(f"--allow-host {host!r}: give a bare host name or address (like studio.lan or "
                             "192.168.1.20), without scheme, path or spaces")
    return hosts


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (no parser that can raise on odd input)."""
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def split_token_query(query: str) -> tuple[str | None, str]:
    """(the ``token`` value, the rest of the query string as sent) for a page URL."""
    token, rest = None, []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        if unquote_plus(key) == TOKEN_QUERY_KEY:
            token = unquote_plus(value)
        else:
            rest.append(item)
    return token, "&".join(rest)


class AccessRules:
    """The rules of one server: built once after binding (the port is known then)."""

    def __init__(self, bind_host: str, port: int, allow_hosts: Iterable[str] = (), token: str | None = None) -> None:
        self.bind_host = bind_host
        self.exposed = not is_loopback(bind_host)
        extra = {host_name(h) for h in allow_hosts if h.strip()}
        self.allowed_hosts = frozenset((machine_names(bind_host) if self.exposed else LOOPBACK_NAMES) | extra)
        self.token = (token or secrets.token_urlsafe(24)) if self.exposed else None
        self.cookie_name = f"localpage_token_{port}"

    # ---- the checks (None = allowed) ---------------------------------------------------------------
    def host_refusal(self, host_header: str, local_address: str) -> str | None:
        """DNS rebinding guard: the Host header must name this server."""
        name = host_name(host_header)
        if name in self.allowed_hosts or (self.exposed and name and name == normal_address(local_address)):
            return None
        if not self.exposed:
            return ("Host header must name localhost (DNS rebinding guard); open http://127.0.0.1:<port>/ "
                    "or add the name with --allow-host")
        return (f"Host header {name[:80]!r} is not a name of this machine (DNS rebinding guard); "
                "add it with --allow-host")

    def cross_site_refusal(self, headers: Mapping[str, str], host_header: str) -> str | None:
        """Requests sent by another site's page (another port of this host included) are refused."""
        site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
        if site and site not in ALLOWED_FETCH_SITES:
            return (f"cross-site request refused (Sec-Fetch-Site: {site[:40]}): only this server's own page "
                    "may call its API")
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() != f"http://{host_header.strip().lower()}":
            return (f"cross-site request refused (Origin: {origin.strip()[:80]}): only this server's own page "
                    "may call its API")
        return None

    def token_refusal(self, headers: Mapping[str, str]) -> str | None:
        """Bound beyond loopback: the token (cookie set by the printed URL, or the header) is required."""
        if self.token is None:
            return None
        sent = headers.get(TOKEN_HEADER) or cookie_value(headers.get("Cookie") or "", self.cookie_name)
        if sent is not None and self.token_matches(sent):
            return None
        return ("this server is reachable from the network and needs its access token: open the URL it printed "
                f"(it carries ?{TOKEN_QUERY_KEY}=...), or send the {TOKEN_HEADER} header")

    def token_matches(self, sent: str) -> bool:
        return self.token is not None and hmac.compare_digest(sent.encode(), self.token.encode())

    def token_cookie(self) -> str:
        """The ``Set-Cookie`` value that stores the token for the page's later requests."""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    # ---- what a person is told ---------------------------------------------------------------------
    def warning(self, what: str, port: int) -> str | None:
        """The start-up warning when bound beyond loopback (None on loopback)."""
        if not self.exposed:
            return None
        where = ("every network interface" if self.bind_host in ("", "0.0.0.0", "::")
                 else f"address {self.bind_host}")
        names = ", ".join(sorted(self.allowed_hosts - LOOPBACK_NAMES)) or "none"
        return (f"WARNING: listening on {where}, port {port}: anyone who can reach this machine and has the "
                f"token in the URL below can {what}. Requests must name this machine in Host ({names}; "
                "more with --allow-host). Safer: bind 127.0.0.1 (the default) and use ssh -L")


__all__ = [
    "ALLOWED_FETCH_SITES",
    "LOOPBACK_NAMES",
    "TOKEN_HEADER",
    "TOKEN_QUERY_KEY",
    "AccessRules",
    "check_allow_hosts",
    "cookie_value",
    "host_header_names_loopback",
    "host_name",
    "is_loopback",
    "machine_names",
    "normal_address",
    "reachable_address",
    "split_token_query",
]
