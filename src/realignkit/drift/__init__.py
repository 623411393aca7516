"""realignkit.drift"""
