"""realignkit.calibration"""
