"""Header-only classification of a night's raw files (nres.io.headers, nres.pipeline.batch):
every readable frame sorted by OBSTYPE, every bad file recorded with its reason."""

import numpy as np
import pytest

from nres.errors import InvalidInputFileError
from nres.io import read_raw
from nres.io.headers import read_raw_info
from nres.pipeline.batch import classify_directory, file_checksum, record_failures
from nres.pipeline.db import Database

from ..io.raw_builders import real_main_header, telescope_header, write_raw

TINY = np.full((8, 8), 1000, dtype=np.uint16)  # header-only reading never looks at the image


def _header(obstype, objects=None):
    header = real_main_header()
    header["OBSTYPE"] = obstype
    if objects is not None:
        header["OBJECTS"] = objects
    return header


def _target_telescopes():
    cards = {"CAT-RA": "01:44:04.083", "CAT-DEC": "-15:56:14.93", "CAT-EPOC": 2000.0}
    return {
        1: telescope_header(1, OBJECT="HD 10700", RA="01:44:05.1", DEC="-15:56:20.0", **cards),
        2: telescope_header(2),
    }


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    raw = tmp_path_factory.mktemp("night") / "raw"
    raw.mkdir()
    name = "cptnrs03-fa13-20190405-{:04d}-{}00.fits.fz"
    write_raw(raw / name.format(1, "b"), header=_header("BIAS", "none&none&none"), image=TINY)
    write_raw(raw / name.format(2, "d"), header=_header("DARK", "none&none&none"), image=TINY)
    write_raw(raw / name.format(3, "w"), header=_header("LAMPFLAT", "tung&tung&none"), image=TINY)
    write_raw(raw / name.format(4, "a"), header=_header("DOUBLE"), image=TINY)
    write_raw(
        raw / name.format(5, "e"),
        header=_header("TARGET", "HD 10700&thar&none"),
        image=TINY,
        telescopes=_target_telescopes(),
    )
    write_raw(raw / name.format(6, "x"), header=_header("FOO"), image=TINY)  # unknown frame type
    write_raw(raw / name.format(7, "x"), header=_header("EXPERIMENTAL"), image=TINY)  # no stage reduces it
    (raw / name.format(8, "e")).write_bytes(
        b"SIMPLE  =                    T" + bytes(range(256)) * 20
    )  # corrupt
    good = (raw / name.format(1, "b")).read_bytes()
    (raw / name.format(9, "b")).write_bytes(good[:4000])  # truncated inside the headers
    (raw / "notes.txt").write_text("not a raw file")  # ignored: not a FITS name
    return raw


def test_classify_directory_sorts_frames_and_lists_bad_files(night):
    out = classify_directory(night)
    names = {stage: [p.split("/")[-1] for p, _ in items] for stage, items in out.stages.items()}
    assert names == {
        "BIAS": ["cptnrs03-fa13-20190405-0001-b00.fits.fz"],
        "DARK": ["cptnrs03-fa13-20190405-0002-d00.fits.fz"],
        "LAMPFLAT": ["cptnrs03-fa13-20190405-0003-w00.fits.fz"],
        "DOUBLE": ["cptnrs03-fa13-20190405-0004-a00.fits.fz"],
        "TARGET": ["cptnrs03-fa13-20190405-0005-e00.fits.fz"],
    }
    info = out.stages["TARGET"][0][1]
    assert (
        info.science_fiber == 0
        and info.site == "cpt"
        and info.instrument == "nres03"
        and info.camera == "fa13"
    )
    assert out.stages["LAMPFLAT"][0][1].fiber_state == "110"
    reasons = {p.split("/")[-1].split("-")[3]: r for p, r in out.failures}
    assert set(reasons) == {"0006", "0007", "0008", "0009"}
    assert reasons["0006"].startswith("InvalidInputFileError") and "unknown OBSTYPE 'FOO'" in reasons["0006"]
    assert "no stage reduces OBSTYPE EXPERIMENTAL" in reasons["0007"]
    assert reasons["0008"].startswith("InvalidInputFileError")
    assert reasons["0009"].startswith("InvalidInputFileError")


def test_failures_are_recorded_in_the_database(night):
    db = Database("sqlite:///:memory:")
    out = classify_directory(night)
    results = record_failures(db, out.failures)
    assert [r.status for r in results] == ["failed"] * 4
    table = db.frames_table(success=False)
    assert len(table) == 4 and set(table["stage"]) == {"classify"}
    for path, reason in out.failures:
        assert db.frame(file_checksum(path))["reason"] == reason


def test_header_only_info_equals_the_full_reader(tmp_path):
    path = write_raw(tmp_path / "cptnrs03-fa13-20190405-0014-a00.fits.fz")  # full size, real header
    full, cheap = read_raw(path).info, read_raw_info(path)
    for name in (
        "obstype",
        "site",
        "instrument",
        "camera",
        "day_obs",
        "mjd_obs",
        "exptime",
        "gain",
        "read_noise",
        "fiber_objects",
        "fiber_state",
        "science_fiber",
        "trimsec",
    ):
        assert getattr(cheap, name) == getattr(full, name), name
    with pytest.raises(InvalidInputFileError, match="does not exist"):
        read_raw_info(tmp_path / "missing.fits")
    with pytest.raises(InvalidInputFileError, match="is not a directory"):
        classify_directory(tmp_path / "missing")
