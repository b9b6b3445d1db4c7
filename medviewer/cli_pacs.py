"""`medviewer pacs echo|find|get|send SERVER ...`: the viewer's PACS functions, headless.

SERVER is a name from the viewer's server list (File > PACS Servers...), or a one-off server
given with --host/--port/--ae (DICOM networking) or --url (DICOMweb). A password or token the
keyring does not hold is read from MEDVIEWER_PACS_SECRET, else asked for on a terminal. Any
failure prints one sentence on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

FAILED = 2
SECRET_ENV = "MEDVIEWER_PACS_SECRET"


def add_pacs_parser(sub) -> None:
    p = sub.add_parser("pacs", help="echo, search, retrieve from and send to a PACS",
                       description="SERVER: a name from File > PACS Servers..., or a one-off "
                       "server with --host/--port/--ae or --url.")
    actions = p.add_subparsers(dest="action", required=True)
    echo = actions.add_parser("echo", help="C-ECHO or a QIDO-RS probe")
    find = actions.add_parser("find", help="search studies (or one study's series)")
    get = actions.add_parser("get", help="retrieve a study or series into the local store")
    send = actions.add_parser("send", help="C-STORE / STOW-RS DICOM files or folders")
    for action in (echo, find, get, send):
        _server_arguments(action)  # SERVER first: `get SERVER STUDY_UID`
    find.add_argument("--name", default="", help="patient name; * and ? are wildcards")
    find.add_argument("--id", default="", help="patient ID")
    find.add_argument("--accession", default="")
    find.add_argument("--from", dest="date_from", metavar="YYYYMMDD", help="study date from")
    find.add_argument("--to", dest="date_to", metavar="YYYYMMDD", help="study date to")
    find.add_argument("--modality", default="")
    find.add_argument("--study", metavar="UID", help="list this study's series instead")
    find.add_argument("--json", action="store_true", help="machine-readable output")
    get.add_argument("study", metavar="STUDY_UID")
    get.add_argument("--series", metavar="UID", help="only this series")
    get.add_argument("--method", choices=("get", "move", "wado"), default="get",
                     help="C-GET (default), C-MOVE to MedViewer's receiver, or WADO-RS")
    get.add_argument("--store", metavar="DIR", help="store folder (default: the viewer's)")
    send.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=run_pacs)


def _server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("server", nargs="?", default="", metavar="SERVER",
                   help="a server name from the viewer's list")
    g = p.add_argument_group("one-off server (instead of a name)")
    g.add_argument("--host", help="DIMSE peer's host")
    g.add_argument("--port", type=int, default=104, help="DIMSE peer's port (104)")
    g.add_argument("--ae", help="DIMSE peer's AE title")
    g.add_argument("--calling-ae", default="MEDVIEWER", help="MedViewer's AE title")
    g.add_argument("--receive-port", type=int, default=11112,
                   help="MedViewer's C-STORE receiver port for --method move")
    g.add_argument("--url", help="DICOMweb base URL")
    g.add_argument("--user", default="", help="DICOMweb user (basic authentication)")
    g.add_argument("--bearer", action="store_true", help="DICOMweb bearer token (from "
                   f"{SECRET_ENV} or a prompt)")
    g.add_argument("--no-verify-tls", action="store_true", help="do not verify the TLS "
                   "certificate (only on a network you trust)")


def run_pacs(ns: argparse.Namespace) -> int:
    from medviewer.pacs.errors import PacsCancelled, PacsError

    try:
        server = _server(ns)
        return ACTIONS[ns.action](ns, server)
    except PacsCancelled as exc:
        print(f"medviewer pacs {ns.action}: {exc}", file=sys.stderr)
    except PacsError as exc:
        print(f"medviewer pacs {ns.action}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"medviewer pacs {ns.action}: interrupted; what had fully arrived is kept, and "
              "running it again fetches only what is missing.", file=sys.stderr)
    return FAILED


def _server(ns: argparse.Namespace):
    from medviewer.pacs import servers as srv
    from medviewer.pacs.errors import PacsError

    if ns.host or ns.ae or ns.url:
        if ns.action == "send" and ns.server:  # `send --url U FILE...`: no name was given
            ns.paths.insert(0, ns.server)
            ns.server = ""
        if ns.url:
            auth = "bearer" if ns.bearer else "basic" if ns.user else "none"
            server = srv.Server(ns.server or "command line", kind="dicomweb", base_url=ns.url,
                                auth=auth, username=ns.user,
                                verify_tls=not ns.no_verify_tls)
        else:
            server = srv.Server(ns.server or "command line", ae_title=ns.ae or "",
                                host=ns.host or "", port=ns.port, calling_ae=ns.calling_ae,
                                receive_port=ns.receive_port)
        if (problem := server.problem()) is not None:
            raise PacsError(problem + " (--host and --ae, or --url)")
    elif ns.server:
        server = srv.get_server(ns.server)
    else:
        raise PacsError("Say which PACS: a server name from File > PACS Servers..., or "
                        "--host/--port/--ae, or --url.")
    if server.auth != "none" and srv.get_secret(server) is None:
        secret = os.environ.get(SECRET_ENV)
        if secret is None and sys.stdin.isatty():
            import getpass

            secret = getpass.getpass(f"Password or token for {server.name}: ")
        if secret is None:
            raise PacsError(f"Server {server.name!r} needs a password or token: set "
                            f"{SECRET_ENV}, or save it in File > PACS Servers...")
        srv.remember_for_this_run(server, secret)
    return server


def _echo(ns, server) -> int:
    from medviewer.pacs import client

    print(client.echo(server))
    return 0


def _find(ns, server) -> int:
    from medviewer.pacs import client

    if ns.study:
        hits = client.find_series(server, ns.study)
    else:
        hits = client.find_studies(server, patient_name=ns.name, patient_id=ns.id,
                                   accession=ns.accession, date_from=ns.date_from,
                                   date_to=ns.date_to, modality=ns.modality)
    if ns.json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
        return 0
    from medviewer.cli import _printable as out

    for h in hits:
        if ns.study:
            number = h.number if h.number is not None else "-"
            print(out(f"#{number} {h.modality:3} {h.instance_count or 0:5d} images  "
                      f"{h.description}  ({h.series_uid})"))
        else:
            print(out(f"{h.study_date or '--------'}  {h.patient_name or '(no name)'} "
                      f"[{h.patient_id}]  {'/'.join(h.modalities)}  {h.description}  "
                      f"{h.series_count or 0} series, {h.instance_count or 0} images  "
                      f"acc {h.accession or '-'}  ({h.study_uid})"))
    print(f"{len(hits)} {'series' if ns.study else 'studies' if len(hits) != 1 else 'study'}")
    return 0


def _get(ns, server) -> int:
    from medviewer.pacs import client
    from medviewer.pacs.store import LocalStore

    store = LocalStore(Path(ns.store) if ns.store else None)
    result = client.retrieve(server, ns.study, ns.series, method=ns.method, store=store)
    where = store.series_folder(ns.study, ns.series) if ns.series else store.study_folder(
        ns.study)
    print(f"Stored {len(result.stored)} instance(s), {result.skipped} already there, in "
          f"{where}.")
    for failed in result.failed:
        print(f"medviewer pacs get: not retrieved: {failed}", file=sys.stderr)
    if result.failed:
        print(f"medviewer pacs get: {len(result.failed)} instance(s) were not retrieved; run "
              "the command again to fetch only what is missing.", file=sys.stderr)
        return FAILED
    return 0


def _send(ns, server) -> int:
    from medviewer.pacs import client
    from medviewer.pacs.errors import PacsError

    files: list[Path] = []
    for name in ns.paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise PacsError(f"{name} is not a file or folder; nothing was sent.")
    result = client.send(server, files)
    total = len(result.accepted) + len(result.failed)
    print(f"{server.name} accepted {len(result.accepted)} of {total} instance(s).")
    for what, why in result.failed:
        print(f"medviewer pacs send: {what}: {why}", file=sys.stderr)
    return FAILED if result.failed else 0


ACTIONS = {"echo": _echo, "find": _find, "get": _get, "send": _send}
