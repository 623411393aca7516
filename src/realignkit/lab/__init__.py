"""realignkit.lab"""
