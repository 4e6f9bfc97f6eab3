"""nres.rv"""
