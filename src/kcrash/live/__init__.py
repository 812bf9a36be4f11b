"""
kcrash.live
===========

This layer is filled in by its own issue; see the README for the layering.
"""
