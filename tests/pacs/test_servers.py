"""The PACS server list: file round trip, atomic save, and secrets that never reach the file."""

from __future__ import annotations

import json
import os

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from medviewer.pacs import servers as srv
from medviewer.pacs.errors import PacsError
from medviewer.pacs.servers import Server


class DictKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def get_password(self, service, username):
        return self.store.get((service, username))

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDVIEWER_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(srv, "_memory_secrets", {})
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


def _two() -> list[Server]:
    return [Server("Orthanc", ae_title="ORTHANC", host="127.0.0.1", port=4242),
            Server("Web", kind="dicomweb", base_url="https://pacs.example.org/dicom-web",
                   auth="basic", username="alice", verify_tls=False)]


def test_round_trip_in_the_user_data_folder(tmp_path):
    assert srv.load_servers() == []
    srv.save_servers(_two())
    assert srv.servers_path() == tmp_path / "pacs-servers.json"
    assert srv.load_servers() == _two()
    assert srv.get_server("Web").verify_tls is False
    with pytest.raises(PacsError, match="no PACS server called 'Nope'.*Orthanc, Web"):
        srv.get_server("Nope")


def test_unknown_keys_are_ignored_and_bad_files_are_sentences(tmp_path):
    path = srv.servers_path()
    path.write_text(json.dumps({"servers": [{"name": "A", "host": "h", "ae_title": "X",
                                             "port": "4242", "from_the_future": 1}]}))
    assert srv.load_servers() == [Server("A", host="h", ae_title="X", port=4242)]
    path.write_text("{not json")
    with pytest.raises(PacsError, match="cannot be read.*fix or delete"):
        srv.load_servers()
    path.write_text(json.dumps({"servers": [{"name": "A", "port": "x"}]}))
    with pytest.raises(PacsError, match="port that is not a number"):
        srv.load_servers()


def test_save_refuses_duplicates_and_unusable_entries_and_keeps_the_old_file():
    srv.save_servers(_two())
    before = srv.servers_path().read_bytes()
    with pytest.raises(PacsError, match="Two PACS servers are called 'Orthanc'"):
        srv.save_servers(_two() + [_two()[0]])
    with pytest.raises(PacsError, match="base URL"):
        srv.save_servers([Server("W", kind="dicomweb", base_url="ftp://x")])
    with pytest.raises(PacsError, match="1 to 16 characters"):
        srv.save_servers([Server("D", host="h", ae_title="A" * 17)])
    assert srv.servers_path().read_bytes() == before


def test_save_is_atomic(monkeypatch):
    srv.save_servers(_two())
    before = srv.servers_path().read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(PacsError, match="cannot be saved.*No space left"):
        srv.save_servers([Server("Other", host="h", ae_title="B")])
    assert srv.servers_path().read_bytes() == before
    assert [p.name for p in srv.servers_path().parent.iterdir()] == ["pacs-servers.json"]


def test_the_server_list_is_readable_by_its_owner_only():
    """Host names, AE titles and user names of a site's PACS: 0600, whatever the umask."""
    srv.save_servers(_two())
    assert srv.servers_path().stat().st_mode & 0o077 == 0


def test_secret_goes_to_the_keyring_never_to_the_file():
    ring = DictKeyring()
    keyring.set_keyring(ring)
    web = _two()[1]
    assert srv.set_secret(web, "s3cret-pw") is True
    srv.save_servers(_two())
    assert "s3cret-pw" not in srv.servers_path().read_text()
    assert ring.store == {(srv.KEYRING_SERVICE, "Web/alice"): "s3cret-pw"}
    srv._memory_secrets.clear()  # a new run of the viewer: the keyring still has it
    assert srv.get_secret(srv.get_server("Web")) == "s3cret-pw"


def test_without_a_usable_keyring_the_secret_lives_in_memory_only():
    keyring.set_keyring(fail.Keyring())
    web = _two()[1]
    assert srv.get_secret(web) is None
    assert srv.set_secret(web, "token") is False
    assert srv.get_secret(web) == "token"
    srv._memory_secrets.clear()  # the next run asks again
    assert srv.get_secret(web) is None
