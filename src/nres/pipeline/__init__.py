"""nres.pipeline"""
