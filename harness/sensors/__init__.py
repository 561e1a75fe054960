"""Sensors: one module per sensor kind (memory, power, thermal, ...).

A missing sensor is recorded as null, never replaced by an estimate.
"""
