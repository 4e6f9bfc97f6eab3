"""nres.calib"""
