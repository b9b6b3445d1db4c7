"""De-identification (PS3.15 Basic Application Level Confidentiality Profile): the names the
export, the CLI and the UI use. See docs/deidentification.md.

    deid = Deidentifier(DeidOptions(key="site secret"))     # deidentifier.py
    clean = deid.dataset(ds); deid.pseudonym(patient_id); deid.uid(uid)
    deid.check(header)   # refuse / warn / table row only: no copy, not counted
    report = deidentify_files(paths, out_dir, deid)         # deid_files.py
    write_pseudonym_table(path_outside_the_export, deid)
    report.to_dict(), report.text()                          # deid_report.py
"""

from medviewer.core.dataset.deid_files import deidentify_files, write_pseudonym_table
from medviewer.core.dataset.deid_report import DeidReport
from medviewer.core.dataset.deidentifier import Deidentifier, DeidError, DeidOptions

__all__ = ["DeidError", "DeidOptions", "DeidReport", "Deidentifier", "deidentify_files",
           "write_pseudonym_table"]
