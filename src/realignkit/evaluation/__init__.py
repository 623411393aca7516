"""realignkit.evaluation"""
