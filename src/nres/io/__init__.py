"""nres.io"""
