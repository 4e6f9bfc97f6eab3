"""`nres simulate` writes a frame and its truth."""

import numpy as np
from astropy.nddata import CCDData

from nres.pipeline.cli import main


def test_cli_simulate_writes_frame_and_truth(tmp_path):
    assert (
        main(
            [
                "simulate",
                "--type",
                "DOUBLE",
                "--seed",
                "3",
                "--window",
                "1000",
                "1100",
                "200",
                "400",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    frame = CCDData.read(tmp_path / "sim_lsc_double_3.fits")
    assert frame.shape == (100, 200) and frame.meta["NRESY0"] == 1000 and frame.meta["OBSTYPE"] == "DOUBLE"
    truth = np.load(tmp_path / "sim_lsc_double_3_truth.npz")
    assert truth["expected"].shape[-1] == 200 and truth["cosmic_rays"].shape == (100, 200)
