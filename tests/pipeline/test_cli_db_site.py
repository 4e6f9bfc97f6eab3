"""``nres db import-csv/export-csv`` and ``nres init-site``."""

import subprocess
import sys
from pathlib import Path

import pytest

from nres.errors import InvalidParameterError
from nres.pipeline.cli import main
from nres.pipeline.cmd_init_site import IDL_SUBDIRS, NRES_SUBDIRS, init_site
from nres.pipeline.db import Database

TARGETS = Path(__file__).parents[1] / "data" / "targets.csv"


def test_db_import_then_export_targets(tmp_path, capsys):
    db = tmp_path / "site" / "nres.sqlite"
    assert main(["db", "import-csv", "targets", str(TARGETS), "--db", str(db)]) == 0
    assert "248 targets rows imported" in capsys.readouterr().out
    out = tmp_path / "targets.csv"
    assert main(["db", "export-csv", "targets", str(out), "--db", f"sqlite:///{db}"]) == 0
    assert "248 targets rows exported" in capsys.readouterr().out
    assert out.read_text().splitlines()[0] == TARGETS.read_text().splitlines()[0]
    assert main(["db", "export-csv", "targets", str(out), "--db", str(db), "--no-overwrite"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["db", "import-csv", "zeros", str(tmp_path / "none.csv"), "--db", str(db)]) == 2


def test_init_site_nres_and_idl_layouts(tmp_path):
    out = init_site(tmp_path, "lsc")
    assert out.instance == tmp_path / "lsc" / "nres01" and (out.instance / "raw").is_dir()
    assert all((out.reduced / d).is_dir() for d in NRES_SUBDIRS)
    db = Database(out.db_url)
    assert len(db.targets_table()) == 248  # the packaged target list (same file as tests/data)
    db.close()
    init_site(tmp_path, "lsc")  # idempotent: the targets are not loaded twice
    assert len(Database(out.db_url).targets_table()) == 248
    idl = init_site(tmp_path, "cpt", layout="idl", targets=None)
    assert len(IDL_SUBDIRS) == 21 and all((idl.reduced / d).is_dir() for d in IDL_SUBDIRS)
    csvs = sorted(p.name for p in (idl.reduced / "csv").iterdir())
    assert csvs == ["rv.csv", "standards.csv", "targets.csv", "zeros.csv"]
    assert (
        idl.reduced / "csv" / "standards.csv"
    ).read_text() == "Type,Filename,Navg,Site,Camera,JDdata,Flags\n"
    with pytest.raises(InvalidParameterError, match="instrument"):
        init_site(tmp_path, "bpl")
    assert (
        init_site(tmp_path, "bpl", instrument="nres00", targets=None).instance == tmp_path / "bpl" / "nres00"
    )


def test_init_site_command_line(tmp_path, capsys):
    assert main(["init-site", str(tmp_path), "--site", "elp", "--no-targets"]) == 0
    assert "site elp (nres02)" in capsys.readouterr().out
    assert (tmp_path / "elp" / "nres02" / "nres.sqlite").is_file()


def test_help_of_new_commands():
    for args in (["db", "--help"], ["db", "import-csv", "--help"], ["init-site", "--help"]):
        run = subprocess.run(
            [sys.executable, "-m", "nres.pipeline.cli", *args], capture_output=True, text=True
        )
        assert run.returncode == 0 and "usage: nres" in run.stdout


def test_cli_literals_match_the_modules():
    from nres.pipeline import cmd_db, db, legacy_csv

    assert cmd_db.DEFAULT_URL == db.DEFAULT_URL and cmd_db.CSV_KINDS == legacy_csv.CSV_KINDS
