"""`medviewer dataset export`: a dataset on success, one sentence and status 2 on failure."""

from __future__ import annotations

import json

import pytest

from medviewer.cli import main


def test_cli_writes_nnunet_and_monai(studies, capsys):
    rc = main(["dataset", "export", str(studies.data), "--out", str(studies.out),
               "--format", "nnunet,monai", "--no-deidentify", "--dataset-id", "7",
               "--name", "Chest"])
    assert rc == 0, capsys.readouterr().err
    root = studies.out / "Dataset007_Chest"
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 2
    assert (root / "datalist.json").is_file()
    assert "2 case(s) exported" in capsys.readouterr().out


def test_cli_exports_only_the_series_named(studies, capsys):
    from medviewer.core.dicom import scan

    uid = scan(studies.folders["PAT-9182"], cache=False).all_series()[0].series_instance_uid
    rc = main(["dataset", "export", str(studies.data), "--out", str(studies.out),
               "--series", uid, "--no-deidentify", "--json"])
    assert rc == 0
    assert len(json.loads(capsys.readouterr().out)["cases"]) == 1


@pytest.mark.parametrize("args, said", [
    (["--out", "{src}/out", "--no-deidentify"], "inside the source folder"),
    (["--out", "{tmp}/x"], "needs a key"),
    (["--out", "{tmp}/x", "--format", "png", "--key", "k"], "Unknown export format"),
    (["--out", "{tmp}/x", "--no-deidentify", "--split", "{tmp}/none.json"], "cannot be read"),
    (["--out", "{tmp}/x", "--no-deidentify", "--series", "1.2.3"], "Series 1.2.3 is not in"),
])
def test_cli_failures_are_one_sentence_and_status_2(studies, tmp_path, capsys, monkeypatch,
                                                    args, said):
    monkeypatch.delenv("MEDVIEWER_DEID_KEY", raising=False)
    args = [a.format(src=studies.folders["PAT-7731"], tmp=tmp_path) for a in args]
    assert main(["dataset", "export", str(studies.data), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medviewer dataset export: ") and said in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_cli_missing_source(tmp_path, capsys):
    assert main(["dataset", "export", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "--no-deidentify"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_says_so_when_no_series_could_be_exported(tmp_path, capsys):
    import numpy as np

    from medviewer.core.synthetic.variants import write_rgb

    write_rgb(tmp_path / "photo", np.zeros((8, 8, 3), np.uint8), modality="XC")
    rc = main(["dataset", "export", str(tmp_path / "photo"), "--out", str(tmp_path / "o"),
               "--no-deidentify", "--series", _uid(tmp_path / "photo")])
    assert rc == 2
    out, err = capsys.readouterr()
    assert "not exported as NIfTI" in out and "No series could be exported" in err


def _uid(folder):
    from medviewer.core.dicom import scan

    return scan(folder, cache=False).all_series()[0].series_instance_uid


@pytest.mark.parametrize("flag, kept", [([], True), (["--empty-descriptors"], False)])
def test_cli_descriptors_are_kept_cleaned_or_emptied(studies, capsys, flag, kept):
    import pydicom

    rc = main(["dataset", "export", str(studies.data), "--out", str(studies.out), "--format",
               "dicom", "--key", "k", *flag])
    assert rc == 0, capsys.readouterr().err
    images = [pydicom.dcmread(p, stop_before_pixels=True)
              for p in (studies.out / "dicom").rglob("*.dcm")]
    described = {str(ds.get("SeriesDescription", "") or "") for ds in images
                 if ds.Modality == "CT"}
    assert (described != {""}) is kept
