"""Real mail servers on loopback for the email tests: Dovecot (IMAP) and aiosmtpd (SMTP).

Dovecot runs as its own instance: a config file written here, a free port on
127.0.0.1, no system service. Its passdb is static (one password for every user),
so each test logs in as a fresh user and gets an empty mailbox of its own.

Run as root (CI), Dovecot refuses to open mail as uid 0, so mail is owned by
`nobody`; its run and mail folders then live in a short folder under the system
temp dir (mode 755) rather than pytest's tmp_path, whose parents are private to
root and whose long paths would overflow a unix socket name. The config and the
log stay in tmp_path. Run as an ordinary user, Dovecot runs as that user.
"""

from __future__ import annotations

import email
import email.utils
import grp
import imaplib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import close_core, make_core, make_settings, require_system

PASSWORD = "imap-app-password-4821"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.rundir = Path(tempfile.mkdtemp(prefix="dcv-"))
        self._users = itertools.count(1)

    @property
    def log(self) -> str:
        path = self.workdir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _conf(self) -> str:
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            internal = "dovecot" if _has_user("dovecot") else "nobody"
            login = "dovenull" if _has_user("dovenull") else "nobody"
        else:  # everything runs as this user (Dovecot's "running as non-root" setup)
            mail_user, internal, login = me, me.pw_name, me.pw_name
        group = grp.getgrgid(mail_user.pw_gid).gr_name if os.getuid() != 0 else "dovecot"
        mail = self.rundir / "mail"
        mail.mkdir(exist_ok=True)
        os.chmod(self.rundir, 0o755)
        if os.getuid() == 0:
            os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
        return f"""
base_dir = {self.rundir}/run
state_dir = {self.rundir}/state
log_path = {self.workdir}/dovecot.log
info_log_path = {self.workdir}/dovecot.log
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password={PASSWORD} nodelay=yes
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={mail}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
  # No growing auth penalty for 127.0.0.1 after the tests that use a wrong password.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def start(self) -> None:
        self.port = free_port()
        conf = self.workdir / "dovecot.conf"
        conf.write_text(self._conf())
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise RuntimeError(f"dovecot exited ({self.proc.returncode}): {out}\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start listening on {self.port}:\n{self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def new_user(self) -> str:
        return f"owner{next(self._users)}-{os.getpid()}@example.com"

    def imap(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, PASSWORD)
        return conn

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: str = "") -> int:
        """Put a message in a folder, received when its Date says; returns its UID."""
        sent = email.message_from_bytes(raw)["Date"]
        when = imaplib.Time2Internaldate(email.utils.parsedate_to_datetime(sent)) if sent else None
        conn = self.imap(user)
        try:
            typ, data = conn.append(f'"{folder}"', f"({flags})" if flags else None, when, raw)
            assert typ == "OK", data
            text = data[0].decode()
            return int(text.split("APPENDUID ")[1].split()[1].rstrip("]"))
        finally:
            conn.logout()

    def messages(self, user: str, folder: str) -> list[tuple[int, bytes, bytes]]:
        """(uid, flags, raw) of every message in a folder (without marking them read)."""
        conn = self.imap(user)
        try:
            conn.select(f'"{folder}"', readonly=True)
            typ, data = conn.uid("SEARCH", "ALL")
            uids = data[0].split()
            out = []
            for uid in uids:
                typ, got = conn.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                meta = got[0][0] + (got[1] if isinstance(got[1], bytes) else b"")
                out.append((int(uid), meta, got[0][1]))
            return out
        finally:
            conn.logout()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# SMTP ---------------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Recorder:
    """An aiosmtpd handler that records every message it is given. `mode` scripts
    trouble: "drop" closes the connection after the message arrived without
    answering (the server may well have it), "reject" answers the message with 554."""

    received: list[Received] = field(default_factory=list)
    data_commands: int = 0
    mode: str = "ok"
    refuse_rcpt: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        if address.lower() in self.refuse_rcpt:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_commands += 1
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if self.mode == "drop":
            server.transport.abort()
            return "250 never said"
        if self.mode == "reject":
            self.received.pop()
            return "554 5.7.1 Message rejected as spam"
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    """aiosmtpd on a free loopback port, requiring a login with `password`."""

    def __init__(self, user: str, password: str = PASSWORD, **tls: Any) -> None:
        self.recorder = Recorder()
        self.user, self.password = user, password
        self.logins: list[tuple[str, bool]] = []
        self.port = free_port()
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, server_hostname="mail.test",
            authenticator=self._auth, auth_required=True, auth_require_tls=False, **tls,
        )

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user and \
            auth_data.password.decode() == self.password
        self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


# Fixtures (imported by the email test modules) ----------------------------------------------

OWNER = "sam@example.com"
# Plain-text AUTH is the point on loopback; aiosmtpd warns about it on every connection.
QUIET = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
_logins = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = require_system("dovecot", "dovecot-imapd")
    server = Dovecot(binary, tmp_path_factory.mktemp("dovecot"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def login() -> str:
    """This test's own mail login: a fresh (empty) mailbox on the shared Dovecot."""
    return f"sam{next(_logins)}-{os.getpid()}@example.com"


@pytest.fixture
def smtp(login: str) -> Any:
    server = SmtpServer(login).start()
    yield server
    server.stop()


def mail_settings(tmp_path: Path, fake: Any, roots: Path, login: str, smtp_port: int, imap_port: int,
                  **extra: Any) -> Any:
    values: dict[str, Any] = dict(
        EMAIL_ADDRESS=OWNER, EMAIL_USERNAME=login, EMAIL_PASSWORD=PASSWORD, EMAIL_FROM_NAME="Sam Owner",
        IMAP_HOST="127.0.0.1", IMAP_PORT=imap_port, IMAP_SECURITY="none",
        SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_port, SMTP_SECURITY="none", EMAIL_TIMEOUT=5,
    )
    values.update(extra)
    return make_settings(tmp_path, fake.url, roots, **values)


@pytest.fixture
def send_settings(tmp_path: Path, fake: Any, roots: Path, login: str, smtp: SmtpServer) -> Any:
    """Mail settings for sending only: IMAP points at a port nothing listens on."""
    return mail_settings(tmp_path, fake, roots, login, smtp.port, free_port())


@pytest.fixture
def full_settings(tmp_path: Path, fake: Any, roots: Path, login: str, smtp: SmtpServer, dovecot: Dovecot) -> Any:
    return mail_settings(tmp_path, fake, roots, login, smtp.port, dovecot.port)


@pytest_asyncio.fixture
async def send_core(send_settings: Any) -> Any:
    core, channel = await make_core(send_settings)
    core.channel = channel
    yield core
    await close_core(core)


@pytest_asyncio.fixture
async def mail_core(full_settings: Any) -> Any:
    core, channel = await make_core(full_settings)
    core.channel = channel
    yield core
    await close_core(core)
