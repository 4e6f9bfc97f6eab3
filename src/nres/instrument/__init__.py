"""nres.instrument"""
