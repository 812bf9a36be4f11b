"""Test builders shared by several test directories (on the pytest ``pythonpath``)."""
