"""The PACS servers MedViewer knows: one JSON file shared by the viewer and the CLI.

The file (`<user data folder>/pacs-servers.json`, see medviewer.core.demo.data_dir) holds
addresses and user names only, never a password or token: those go to the OS keyring through
`keyring` when a usable backend exists, otherwise they are kept in memory for this process only
(the viewer then asks once per run). The file is written atomically (temp file + os.replace),
so a crash mid-save leaves the previous list intact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medviewer.core.atomic import atomic_file
from medviewer.pacs.errors import PacsError

SERVERS_FILE = "pacs-servers.json"
KEYRING_SERVICE = "MedViewer PACS"
KINDS = ("dimse", "dicomweb")
AUTHS = ("none", "basic", "bearer")

_memory_secrets: dict[str, str] = {}  # server name -> secret, when no keyring is usable


@dataclass
class Server:
    name: str
    kind: str = "dimse"  # "dimse" | "dicomweb"
    ae_title: str = ""  # the peer's AE title (DIMSE)
    host: str = ""
    port: int = 104
    calling_ae: str = "MEDVIEWER"  # MedViewer's own AE title
    receive_port: int = 11112  # MedViewer's C-STORE receiver (C-MOVE destination)
    base_url: str = ""  # DICOMweb root, e.g. https://pacs.example.org/dicom-web
    qido_path: str = ""  # only when QIDO/WADO/STOW live under other prefixes than base_url
    wado_path: str = ""
    stow_path: str = ""
    auth: str = "none"  # "none" | "basic" | "bearer"
    username: str = ""
    verify_tls: bool = True

    def problem(self) -> str | None:
        """A sentence saying what makes this entry unusable, or None when it looks usable."""
        if not self.name.strip():
            return "A PACS server needs a name."
        if self.kind not in KINDS:
            return f"Server {self.name!r}: kind must be 'dimse' or 'dicomweb', not {self.kind!r}."
        if self.auth not in AUTHS:
            return (f"Server {self.name!r}: authentication must be none, basic or bearer, "
                    f"not {self.auth!r}.")
        if self.kind == "dimse":
            if not self.host or not self.ae_title:
                return f"Server {self.name!r} needs a host and the PACS's AE title."
            if not 0 < int(self.port) < 65536:
                return f"Server {self.name!r}: port {self.port} is not a TCP port (1-65535)."
            for label, ae in (("its AE title", self.ae_title), ("MedViewer's AE title",
                                                                self.calling_ae)):
                if len(ae) > 16 or "\\" in ae or not ae.strip():
                    return (f"Server {self.name!r}: {label} {ae!r} must be 1 to 16 characters "
                            "without a backslash.")
        elif not self.base_url.lower().startswith(("http://", "https://")):
            return f"Server {self.name!r} needs a base URL starting with http:// or https://."
        return None

    def describe(self) -> str:
        if self.kind == "dimse":
            return f"{self.ae_title}@{self.host}:{self.port}"
        return self.base_url


def servers_path() -> Path:
    from medviewer.core.demo import data_dir

    return data_dir() / SERVERS_FILE


def load_servers(path: Path | None = None) -> list[Server]:
    """The saved servers ([] when none were saved yet)."""
    path = path or servers_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacsError(f"The PACS server list {path} cannot be read ({exc}); fix or delete "
                        "the file and add the servers again.") from exc
    entries = raw.get("servers") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise PacsError(f"The PACS server list {path} has no 'servers' list; fix or delete the "
                        "file and add the servers again.")
    known = {f.name: f.type for f in fields(Server)}
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PacsError(f"The PACS server list {path} has an entry without a name; fix or "
                            "delete the file.")
        values = {k: v for k, v in entry.items() if k in known}  # newer files' extra keys
        try:
            for key in ("port", "receive_port"):
                if key in values:
                    values[key] = int(values[key])
            values["verify_tls"] = bool(values.get("verify_tls", True))
        except (TypeError, ValueError) as exc:
            raise PacsError(f"Server {entry['name']!r} in {path} has a port that is not a "
                            "number; fix it in the file or in PACS Servers.") from exc
        out.append(Server(**values))
    return out


def save_servers(servers: list[Server], path: Path | None = None) -> None:
    """Write the list atomically; refuses duplicate names and unusable entries."""
    path = path or servers_path()
    names = [s.name for s in servers]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise PacsError(f"Two PACS servers are called {dup!r}; give each a different name.")
    for server in servers:
        if (problem := server.problem()) is not None:
            raise PacsError(problem)
    text = json.dumps({"version": 1, "servers": [asdict(s) for s in servers]}, indent=2)
    try:
        with atomic_file(path, "w", private=True, encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        reason = exc.strerror or exc
        raise PacsError(f"The PACS server list cannot be saved to {path} ({reason}); check "
                        "that the folder is writable.") from exc


def get_server(name: str, path: Path | None = None) -> Server:
    servers = load_servers(path)
    for server in servers:
        if server.name == name:
            return server
    known = ", ".join(s.name for s in servers) or "none yet"
    raise PacsError(f"There is no PACS server called {name!r} (known: {known}); add it in "
                    "File > PACS Servers... or pass --host/--port/--ae or --url.")


def _keyring():
    """The keyring module when a usable (non-fail, non-null) backend exists, else None."""
    try:
        import keyring
        from keyring.backends import fail, null

        backend = keyring.get_keyring()
    except Exception:  # no module, or a backend that breaks on import
        return None
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    return keyring


def _key(server: Server) -> str:
    return f"{server.name}/{server.username}" if server.username else server.name


def set_secret(server: Server, secret: str) -> bool:
    """Remember a password or token; True when the OS keyring holds it (survives restarts),
    False when it is kept in memory for this run only."""
    _memory_secrets[_key(server)] = secret
    kr = _keyring()
    if kr is None:
        return False
    try:
        kr.set_password(KEYRING_SERVICE, _key(server), secret)
    except Exception:  # a locked or broken keyring: this run still has it in memory
        return False
    return True


def get_secret(server: Server) -> str | None:
    secret = _memory_secrets.get(_key(server))
    if secret is not None:
        return secret
    kr = _keyring()
    if kr is None:
        return None
    try:
        return kr.get_password(KEYRING_SERVICE, _key(server))
    except Exception:
        return None


def remember_for_this_run(server: Server, secret: str) -> None:
    """Hold a secret in memory only (the command line's MEDVIEWER_PACS_SECRET or prompt)."""
    _memory_secrets[_key(server)] = secret
