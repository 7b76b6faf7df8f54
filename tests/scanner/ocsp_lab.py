"""A revocation lab on loopback, built from real parts: a CA kept by the ``openssl`` CLI (``openssl
ca``, so its index.txt is the one ``openssl ocsp -index`` reads), ``openssl ocsp`` responders,
``openssl s_server`` servers that staple OCSP responses, a small HTTP server for CRLs (which also
serves a fixed OCSP answer, to count requests), and a server that accepts and never answers.

``openssl ocsp`` (OpenSSL 3.0) takes a port number only, and listens on every interface: the lab
picks a free port on loopback first (the certificates must name it), then starts the responder
on it; ``s_server`` listens on loopback, on a port of the kernel's choice. Its index.txt is read once,
at start (3.0 reloads it only now and then), so every certificate is issued and revoked first.
A missing ``openssl`` fails the tests that need it, with what to install.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.loopback import LoopbackServer

HOST = "127.0.0.1"
DOMAIN = "revocation.test"
START_TIMEOUT = 5.0  # seconds a server process may take to listen
_ACCEPT = re.compile(r"^ACCEPT \S*:(\d+)", re.MULTILINE)

_CA_CONFIG = """\
[ca]
default_ca = lab
[lab]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 30
default_crl_days = 1
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
"""


def openssl_binary() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise AssertionError("the openssl CLI is missing: install it (Debian: apt-get install openssl)")
    return path


def openssl(*args: str | Path, cwd: Path) -> bytes:
    """Run ``openssl args`` in ``cwd``; its stdout. A failure raises with openssl's own words."""
    done = subprocess.run([openssl_binary(), *map(str, args)], cwd=cwd, capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"openssl {command} failed:\n{done.stderr.decode(errors='replace')}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Issued:
    """A certificate the lab's CA (or the lab) made, with its key, on disk and parsed."""

    name: str
    pem: Path
    key: Path
    cert: x509.Certificate

    @property
    def hostname(self) -> str:
        return f"{self.name}.{DOMAIN}"


class Authority:
    """A CA kept by ``openssl ca`` in ``directory`` (ECDSA P-256, like the TLS lab's)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (directory / "issued").mkdir(parents=True)
        (directory / "index.txt").touch()
        (directory / "serial").write_text("1000\n")
        (directory / "crlnumber").write_text("1000\n")
        self.config = directory / "ca.cnf"
        self.config.write_text(_CA_CONFIG.format(dir=directory))
        self.index = directory / "index.txt"
        self.pem, self.key = directory / "ca.pem", directory / "ca.key"
        openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", self.key, "-out", self.pem, "-days", "30",
            "-subj", "/O=dns-cert-checker lab/CN=Revocation lab CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )  # fmt: skip
        self.cert = x509.load_pem_x509_certificate(self.pem.read_bytes())

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def issue(
        self,
        name: str,
        *,
        ocsp_url: str | None = None,
        crl_url: str | None = None,
        must_staple: bool = False,
        usage: str = "serverAuth",
    ) -> Issued:
        """A certificate for ``<name>.revocation.test`` naming these URLs; ``usage``: its EKU
        (``OCSPSigning`` for a delegated responder)."""
        lines = [
            "[leaf]",
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature",
            f"extendedKeyUsage = {usage}",
            f"subjectAltName = DNS:{name}.{DOMAIN}",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid",
        ]
        if ocsp_url:
            lines.append(f"authorityInfoAccess = OCSP;URI:{ocsp_url}")
        if crl_url:
            lines.append(f"crlDistributionPoints = URI:{crl_url}")
        if must_staple:
            lines.append("tlsfeature = status_request")
        extensions = self.dir / f"{name}.ext"
        extensions.write_text("\n".join(lines) + "\n")
        key, request, pem = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", request, "-subj", f"/CN={name}.{DOMAIN}",
            cwd=self.dir,
        )  # fmt: skip
        openssl(
            "ca", "-batch", "-config", self.config, "-extfile", extensions, "-extensions", "leaf",
            "-in", request, "-out", pem, "-notext",
            cwd=self.dir,
        )  # fmt: skip
        return Issued(name, pem, key, x509.load_pem_x509_certificate(pem.read_bytes()))

    def revoke(self, issued: Issued, reason: str = "keyCompromise") -> None:
        openssl("ca", "-batch", "-config", self.config, "-revoke", issued.pem, "-crl_reason", reason, cwd=self.dir)

    def crl(self) -> bytes:
        """The CA's CRL now (``openssl ca -gencrl``), DER, as CRL distribution points serve it."""
        pem = self.dir / "ca.crl.pem"
        openssl("ca", "-batch", "-config", self.config, "-gencrl", "-crlexts", "crl_ext", "-out", pem, cwd=self.dir)
        return openssl("crl", "-in", pem, "-outform", "DER", cwd=self.dir)

    def crl_signed_by_another_key(self) -> bytes:
        """A CRL in the CA's name, fresh, signed by a key that is not the CA's."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(days=1))
        )
        return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(
            serialization.Encoding.DER
        )

    def stale_crl(self) -> bytes:
        """A CRL the CA signed, whose nextUpdate passed a day ago."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(days=3))
            .next_update(now - timedelta(days=1))
        )
        return builder.sign(self.private_key(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp_response(self, issued: Issued) -> Path:
        """The OCSP response for ``issued`` (DER file) that ``openssl ocsp -index`` gives offline,
        signed by the CA: what a server staples."""
        request, response = self.dir / f"{issued.name}.ocsp-req.der", self.dir / f"{issued.name}.ocsp-resp.der"
        openssl("ocsp", "-issuer", self.pem, "-cert", issued.pem, "-no_nonce", "-reqout", request, cwd=self.dir)
        openssl(
            "ocsp", "-index", self.index, "-rsigner", self.pem, "-rkey", self.key, "-CA", self.pem,
            "-reqin", request, "-respout", response, "-nmin", "5",
            cwd=self.dir,
        )  # fmt: skip
        return response


def self_signed(directory: Path, name: str) -> Issued:
    """A certificate of a stranger: self-signed, by a key the lab's CA never saw."""
    key, pem = directory / f"{name}.key", directory / f"{name}.pem"
    openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", pem, "-days", "30", "-subj", f"/CN={name}", "-addext", "extendedKeyUsage=OCSPSigning",
        cwd=directory,
    )  # fmt: skip
    return Issued(name, pem, key, x509.load_pem_x509_certificate(pem.read_bytes()))


class Process:
    """A server process of the lab (``openssl ocsp`` or ``s_server``), stopped by its PID. It is up
    once it prints ``ACCEPT <address>:<port>`` (a connection made to find out would be worse: the
    responder stalls on a client that hangs up without a request)."""

    def __init__(self, args: list[str | Path], log: Path) -> None:
        self._log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [openssl_binary(), *map(str, args)], stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        try:
            self.port = self._wait_accepting()
        except BaseException:
            self.stop()
            raise

    def _wait_accepting(self) -> int:
        give_up = time.monotonic() + START_TIMEOUT
        while time.monotonic() < give_up:
            said = self._log.read_text(errors="replace")
            accepting = _ACCEPT.search(said)
            if accepting:
                return int(accepting.group(1))
            if self.process.poll() is not None:
                raise AssertionError(f"{self.process.args!r} exited with {self.process.returncode}:\n{said}")
            time.sleep(0.01)
        raise AssertionError(f"{self.process.args!r} is not listening after {START_TIMEOUT} s")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # signals self.process.pid, nothing else
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def ocsp_responder(authority: Authority, port: int, signer: Issued | None = None, *, key_id: bool = False) -> Process:
    """``openssl ocsp -index`` on ``port``, signing with ``signer`` (the CA itself by default)."""
    rsigner, rkey = (signer.pem, signer.key) if signer else (authority.pem, authority.key)
    name = signer.name if signer else "ca"
    args: list[str | Path] = [
        "ocsp", "-index", authority.index, "-port", str(port), "-rsigner", rsigner, "-rkey", rkey,
        "-CA", authority.pem, "-nmin", "5", "-ignore_err",
    ]  # fmt: skip
    if key_id:
        args.append("-resp_key_id")
    return Process(args, authority.dir / f"ocsp-{name}-{port}.log")


def stapling_server(authority: Authority, leaf: Issued, staple: Path | None) -> Process:
    """``openssl s_server`` serving ``leaf`` (and the CA) on loopback, stapling ``staple`` if given."""
    args: list[str | Path] = [
        "s_server", "-accept", f"{HOST}:0", "-cert", leaf.pem, "-key", leaf.key,
        "-cert_chain", authority.pem, "-www",
    ]  # fmt: skip
    if staple is not None:
        args += ["-status_file", staple]
    return Process(args, authority.dir / f"s_server-{leaf.name}.log")


# --- servers in this process -------------------------------------------------------------------


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class Drip:
    """Announce ``length`` bytes, then send one every ``interval`` seconds (for at most ``limit``)."""

    length: int = 1_000_000
    interval: float = 0.05
    limit: float = 20.0


@dataclass(frozen=True)
class Unsized:
    """``body`` with no Content-Length: its end is the connection's close."""

    body: bytes


Route = bytes | Redirect | Drip | Unsized


@dataclass
class WebServer:
    """HTTP on loopback: each path answers (GET or POST) what ``routes`` says; ``hits`` counts the
    requests per path, ``bodies`` keeps what was POSTed."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="revocation-web", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def _record(self, path: str, body: bytes) -> Route | None:
        with self._lock:
            self.hits[path] += 1
            if body:
                self.bodies.append(body)
            return self.routes.get(path)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(web: WebServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length))

        def _answer(self, body: bytes) -> None:
            route = web._record(self.path, body)
            if route is None:
                self.send_error(404)
            elif isinstance(route, Redirect):
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif isinstance(route, Drip):
                self._drip(route)
            elif isinstance(route, Unsized):
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(route.body)
                self.close_connection = True
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)

        def _drip(self, drip: Drip) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(drip.length))
            self.end_headers()
            give_up = time.monotonic() + drip.limit
            with contextlib.suppress(OSError):  # the client hung up: what a drip waits for
                while time.monotonic() < give_up:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(drip.interval)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    return Handler


class SilentServer(LoopbackServer):
    """Accepts connections on loopback and never answers (nor reads); ``accepted`` counts them."""

    def __init__(self) -> None:
        super().__init__(HOST, name="revocation-silent")
        self.start()

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def release(self, sock: socket.socket) -> None:
        sock.close()  # each connection is held, untouched, until then


# --- the whole lab -----------------------------------------------------------------------------


@dataclass
class RevocationLab:
    authority: Authority
    leaves: dict[str, Issued]
    web: WebServer
    silent: SilentServer
    responders: dict[str, Process]
    stapling: dict[str, Process]
    unstapled: dict[str, Process]

    @property
    def ca(self) -> x509.Certificate:
        return self.authority.cert

    def chain(self, name: str) -> list[x509.Certificate]:
        """The verified chain of leaf ``name``: the leaf, then its issuer."""
        return [self.leaves[name].cert, self.authority.cert]


@contextlib.contextmanager
def start_revocation_lab(directory: Path) -> Iterator[RevocationLab]:
    """Issue every certificate, then start every server; all of them stop at the end."""
    with contextlib.ExitStack() as stack:
        authority = Authority(directory)
        web = WebServer()
        stack.callback(web.stop)
        silent = SilentServer()
        stack.callback(silent.close)
        ports = {name: free_port() for name in ("ca", "delegated", "impostor", "stranger", "nobody")}
        main = f"http://{HOST}:{ports['ca']}/"
        crl = web.url("/ca.crl")

        def issue(
            name: str, ocsp_url: str | None = None, crl_url: str | None = None, must_staple: bool = False
        ) -> Issued:
            return authority.issue(name, ocsp_url=ocsp_url, crl_url=crl_url, must_staple=must_staple)

        leaves = {
            "good": issue("good", main, crl),
            "revoked": issue("revoked", main, crl),
            "also-good": issue("also-good", main, crl),
            "must-staple": issue("must-staple", main, crl, must_staple=True),
            "delegated-revoked": issue("delegated-revoked", f"http://{HOST}:{ports['delegated']}/"),
            "via-impostor": issue("via-impostor", f"http://{HOST}:{ports['impostor']}/"),
            "via-stranger": issue("via-stranger", f"http://{HOST}:{ports['stranger']}/"),
            "nobody-listens": issue("nobody-listens", f"http://{HOST}:{ports['nobody']}/"),
            "silent-a": issue("silent-a", silent.url("/"), silent.url("/ca.crl")),
            "silent-b": issue("silent-b", silent.url("/"), silent.url("/ca.crl")),
            "counted": issue("counted", web.url("/ocsp")),
            "forged": issue("forged", crl_url=web.url("/forged.crl")),
            "stale": issue("stale", crl_url=web.url("/stale.crl")),
            "redirected": issue("redirected", crl_url=web.url("/redirect.crl")),
            "huge": issue("huge", crl_url=web.url("/huge.crl")),
            "huge-unsized": issue("huge-unsized", crl_url=web.url("/huge-unsized.crl")),
            "drip": issue("drip", crl_url=web.url("/drip.crl")),
        }
        delegate = authority.issue("delegate", usage="OCSPSigning")  # the CA delegated OCSP signing
        impostor = authority.issue("impostor")  # issued by the CA, but not for OCSP signing
        stranger = self_signed(directory, "stranger")
        authority.revoke(leaves["revoked"], "keyCompromise")
        authority.revoke(leaves["delegated-revoked"], "superseded")

        web.routes.update(
            {
                "/ca.crl": authority.crl(),
                "/forged.crl": authority.crl_signed_by_another_key(),
                "/stale.crl": authority.stale_crl(),
                "/redirect.crl": Redirect(web.url("/ca.crl")),
                "/huge.crl": b"\0" * (2 * 2**20),
                "/huge-unsized.crl": Unsized(b"\0" * (2 * 2**20)),
                "/drip.crl": Drip(),
                "/ocsp": authority.ocsp_response(leaves["counted"]).read_bytes(),
            }
        )
        staples = {name: authority.ocsp_response(leaves[name]) for name in ("good", "revoked")}

        responders: dict[str, Process] = {}
        for name, signer, key_id in (
            ("ca", None, False),
            ("delegated", delegate, True),  # ResponderID by key hash, the other form
            ("impostor", impostor, False),
            ("stranger", stranger, False),
        ):
            responders[name] = ocsp_responder(authority, ports[name], signer, key_id=key_id)
            stack.callback(responders[name].stop)
        stapling: dict[str, Process] = {}
        for name, staple in (("good", staples["good"]), ("revoked", staples["revoked"]), ("must-staple", None)):
            stapling[name] = stapling_server(authority, leaves[name], staple)
            stack.callback(stapling[name].stop)
        # servers that staple nothing, for the engine's active checks
        unstapled = {name: stapling_server(authority, leaves[name], None) for name in ("good", "revoked")}
        for server in unstapled.values():
            stack.callback(server.stop)
        yield RevocationLab(authority, leaves, web, silent, responders, stapling, unstapled)
