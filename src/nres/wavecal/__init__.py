"""nres.wavecal"""
