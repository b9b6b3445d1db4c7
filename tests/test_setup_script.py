"""scripts/setup.sh, scripts/python and .ci/run against the README's two commands.

Nothing is installed: setup.sh runs in a copy of scripts/ with fake apt-get, dpkg-query and
python3 first on PATH, which log what they were asked to do. The real install was checked by
hand with Debian's system Python (PATH=/usr/bin:/bin bash scripts/setup.sh test).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def readme_commands() -> list[str]:
    """The one-line bash blocks of the README's Quick start, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_quick_start_is_two_commands_through_the_launcher():
    start, test = readme_commands()
    assert start == "bash scripts/setup.sh && scripts/python -m medviewer"
    assert test.startswith("bash scripts/setup.sh test && ")
    assert "python3 -m" not in start + test  # the system Python may not have MedViewer


def test_ci_runs_the_readme_test_command_verbatim():
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert lines[-1] == readme_commands()[1]
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_launcher_is_executable_from_a_checkout():
    mode = subprocess.run(["git", "ls-files", "-s", "scripts/python"], cwd=ROOT,
                          capture_output=True, text=True).stdout
    if mode:  # committed: git must keep the executable bit for `scripts/python` to run
        assert mode.startswith("100755")
    assert os.access(ROOT / "scripts" / "python", os.X_OK)


# --- a fake machine -------------------------------------------------------------------------

FAKE_PYTHON3 = r"""#!/bin/bash
echo "python3 $*" >> "$FAKE_LOG"
case "$1" in
  -c) case "$2" in *version_info*"<"*) exit "${FAKE_TOO_OLD:-0}" ;; *print*) echo 3.11 ;; esac ;;
  -V) echo "Python 3.11.2" ;;
  -m)
    if [ "$2" = venv ]; then
      mkdir -p "$3/bin"
      if [ -n "${FAKE_NO_ENSUREPIP:-}" ] && [ ! -e "$FAKE_STATE/python3.11-venv" ]; then
        echo "The virtual environment was not created successfully" >&2; exit 1
      fi
      cp "$(dirname "$0")/envpython" "$3/bin/python"
    fi ;;
esac
"""
ENV_PYTHON = r"""#!/bin/bash
echo "$0 $*" >> "$FAKE_LOG"
"""
APT_GET = r"""#!/bin/bash
echo "apt-get $*" >> "$FAKE_LOG"
if [ "$1" = install ]; then for p in "$@"; do touch "$FAKE_STATE/$p"; done; fi
exit "${FAKE_APT_FAILS:-0}"
"""
SUDO = r"""#!/bin/bash
exec "$@"  # as a user: the fakes, never the machine's apt
"""
DPKG_QUERY = r"""#!/bin/bash
# installed: everything but FAKE_MISSING, unless apt-get installed it since
p="${@: -1}"
if [[ " $FAKE_MISSING " == *" $p "* ]] && [ ! -e "$FAKE_STATE/$p" ]; then exit 1; fi
echo "install ok installed"
"""
SYSTEMCTL = r"""#!/bin/bash
echo "systemctl $*" >> "$FAKE_LOG"
exit "${FAKE_NO_SYSTEMD:-0}"
"""


@pytest.fixture
def machine(tmp_path):
    """A project copy (scripts/ only) and a bin folder of fakes; run(...) runs a command."""
    project, fakes, state = tmp_path / "project", tmp_path / "bin", tmp_path / "state"
    shutil.copytree(ROOT / "scripts", project / "scripts")
    fakes.mkdir()
    state.mkdir()
    for name, text in {"python3": FAKE_PYTHON3, "envpython": ENV_PYTHON, "apt-get": APT_GET,
                       "dpkg-query": DPKG_QUERY, "sudo": SUDO, "systemctl": SYSTEMCTL}.items():
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    log = tmp_path / "log"

    def run(command: str, **env: str) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SUDO_USER")}
        base.update(PATH=f"{fakes}:/usr/bin:/bin", FAKE_LOG=str(log), FAKE_STATE=str(state),
                    FAKE_MISSING="")
        base.update(env)
        return subprocess.run([BASH, "-c", command], cwd=project, env=base, capture_output=True,
                              text=True, timeout=60)

    run.project, run.log = project, log
    return run


def logged(run) -> list[str]:
    return run.log.read_text().splitlines() if run.log.exists() else []


def test_setup_makes_the_project_venv_and_installs_into_it(machine):
    result = machine("bash scripts/setup.sh test")
    assert result.returncode == 0, result.stderr
    venv_python = machine.project / ".venv" / "bin" / "python"
    assert "python3 -m venv .venv" in logged(machine)
    assert any(line.startswith(f"{venv_python} -m pip install") and line.endswith("-e .[test]")
               for line in logged(machine)), logged(machine)
    # nothing went to the python3 on PATH (PEP 668 refuses it on Debian)
    assert not [line for line in logged(machine) if line.startswith("python3 -m pip")]
    # the launcher now runs the venv's interpreter
    launched = machine("scripts/python -m medviewer")
    assert launched.returncode == 0 and logged(machine)[-1] == f"{venv_python} -m medviewer"


def test_setup_keeps_a_working_venv(machine):
    assert machine("bash scripts/setup.sh").returncode == 0
    machine.log.unlink()
    assert machine("bash scripts/setup.sh").returncode == 0
    assert not [line for line in logged(machine) if "-m venv" in line]
    assert logged(machine)[-1].endswith("-m pip install -q --disable-pip-version-check -e .")


def test_setup_installs_into_the_active_virtual_environment(machine, tmp_path):
    active = tmp_path / "myenv"
    (active / "bin").mkdir(parents=True)
    shutil.copy(tmp_path / "bin" / "envpython", active / "bin" / "python")
    result = machine("bash scripts/setup.sh", VIRTUAL_ENV=str(active))
    assert result.returncode == 0, result.stderr
    assert not (machine.project / ".venv").exists()
    assert logged(machine)[-1].startswith(f"{active / 'bin' / 'python'} -m pip install")
    machine("scripts/python -c pass", VIRTUAL_ENV=str(active))
    assert logged(machine)[-1] == f"{active / 'bin' / 'python'} -c pass"


def test_setup_installs_python_venv_when_debian_lacks_it(machine):
    result = machine("bash scripts/setup.sh", FAKE_NO_ENSUREPIP="1", FAKE_MISSING="python3.11-venv")
    assert result.returncode == 0, result.stderr
    log = logged(machine)
    install = next(line for line in log if line.startswith("apt-get install"))
    assert install.endswith(" python3.11-venv")
    assert [line for line in log if line == "python3 -m venv .venv"][1:]  # tried again after
    assert (machine.project / ".venv" / "bin" / "python").exists()


def test_setup_without_venv_support_stops_with_a_clear_message(machine):
    result = machine("bash scripts/setup.sh", FAKE_NO_ENSUREPIP="1", FAKE_MISSING="python3.11-venv",
                     FAKE_APT_FAILS="1")
    assert result.returncode != 0
    assert "python3.11-venv" in result.stderr and "virtual environment" in result.stderr
    assert not (machine.project / ".venv").exists()  # no half-made venv that looks usable


def test_setup_refuses_an_old_python_with_a_message(machine):
    result = machine("bash scripts/setup.sh", FAKE_TOO_OLD="1")
    assert result.returncode != 0 and "3.11 or newer" in result.stderr
    assert not [line for line in logged(machine) if "-m venv" in line or "pip" in line]


def test_setup_test_installs_the_dicom_reference_tools_and_fails_soft(machine):
    missing, pacs = "dicom3tools dcmtk dcm2niix", "orthanc orthanc-dicomweb iproute2"
    every = f"{missing} {pacs}"
    result = machine("bash scripts/setup.sh test", FAKE_MISSING=every)
    assert result.returncode == 0, result.stderr
    installs = [line for line in logged(machine) if line.startswith("apt-get install")]
    assert any(line.endswith(missing) for line in installs)
    assert any(line.endswith(pacs) for line in installs)  # the PACS tests' Orthanc
    # the plain install leaves them alone
    machine.log.unlink()
    for name in every.split():
        (machine.project.parent / "state" / name).unlink()
    assert machine("bash scripts/setup.sh", FAKE_MISSING=every).returncode == 0
    assert not [line for line in logged(machine) if line.startswith("apt-get")]
    # apt failing: a note, and the Python install still happens
    result = machine("bash scripts/setup.sh test", FAKE_MISSING=every, FAKE_APT_FAILS="1")
    assert result.returncode == 0, result.stderr
    assert "could not install dicom3tools" in result.stdout
    assert "could not install orthanc, orthanc-dicomweb and iproute2" in result.stdout
    assert logged(machine)[-1].endswith("-e .[test]")


def test_setup_test_stops_the_orthanc_service_it_installed_and_no_other(machine):
    pacs = "orthanc orthanc-dicomweb iproute2"
    result = machine("bash scripts/setup.sh test", FAKE_MISSING=pacs)
    assert result.returncode == 0, result.stderr
    assert "systemctl disable --now orthanc" in logged(machine)
    assert "Stopped and disabled the orthanc service" in result.stdout
    # an Orthanc the user had before is theirs: its service is left alone
    machine.log.unlink()
    assert machine("bash scripts/setup.sh test").returncode == 0
    assert not [line for line in logged(machine) if line.startswith("systemctl")]
    # no systemd (a container): nothing to stop, no message, the setup goes on
    for name in pacs.split():
        (machine.project.parent / "state" / name).unlink()
    result = machine("bash scripts/setup.sh test", FAKE_MISSING=pacs, FAKE_NO_SYSTEMD="1")
    assert result.returncode == 0, result.stderr
    assert "Stopped" not in result.stdout and logged(machine)[-1].endswith("-e .[test]")


def test_launcher_without_setup_says_what_to_run(machine):
    result = machine("scripts/python -m medviewer")
    assert result.returncode != 0
    assert "bash scripts/setup.sh" in result.stderr and ".venv/bin/python" in result.stderr


def test_launcher_works_from_another_folder(machine, tmp_path):
    assert machine("bash scripts/setup.sh").returncode == 0
    result = machine(f"cd {tmp_path} && {machine.project}/scripts/python -V")
    assert result.returncode == 0
    assert logged(machine)[-1] == f"{machine.project / '.venv' / 'bin' / 'python'} -V"
