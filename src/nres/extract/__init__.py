"""nres.extract"""
