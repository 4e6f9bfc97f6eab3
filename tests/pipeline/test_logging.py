"""nres.pipeline.logging and the CLI's --log-level / --log-json."""

import io
import json
import logging

import pytest

from nres.errors import InvalidParameterError
from nres.pipeline.logging import setup_logging


@pytest.fixture(autouse=True)
def _restore_nres_logger():
    logger = logging.getLogger("nres")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_json_lines_with_extras_and_level_filter():
    stream = io.StringIO()
    setup_logging("info", json=True, stream=stream)
    log = logging.getLogger("nres.pipeline.batch")
    log.debug("hidden")
    log.info("frame %s done", "a.fits", extra={"path": "/raw/a.fits", "stage": "BIAS"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["message"] == "frame a.fits done"
    assert (
        first["logger"] == "nres.pipeline.batch"
        and first["path"] == "/raw/a.fits"
        and first["stage"] == "BIAS"
    )
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_text_format_and_single_handler():
    stream = io.StringIO()
    setup_logging("WARNING", stream=io.StringIO())
    setup_logging("WARNING", stream=stream)  # replaces, does not add
    logging.getLogger("nres.x").warning("careful")
    logging.getLogger("nres.x").info("quiet")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING nres.x: careful")
    with pytest.raises(InvalidParameterError, match="log level"):
        setup_logging("LOUD")


def test_cli_log_options(tmp_path, capsys):
    from nres.pipeline.cli import main

    db = tmp_path / "x.sqlite"
    out = tmp_path / "rv.csv"
    assert (
        main(["--log-level", "debug", "--log-json", "db", "export-csv", "rv", str(out), "--db", str(db)]) == 0
    )
    assert logging.getLogger("nres").level == logging.DEBUG
    from nres.pipeline.logging import JSONFormatter

    assert isinstance(logging.getLogger("nres").handlers[-1].formatter, JSONFormatter)
    assert "0 rv rows exported" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--log-level", "LOUD", "db", "export-csv", "rv", str(out)])
