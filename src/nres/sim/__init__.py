"""nres.sim"""
