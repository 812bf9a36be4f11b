"""
kcrash.collect
==============

Dump collection: capture, filter and write dumps (between helpers and analysis in the layering).
"""
