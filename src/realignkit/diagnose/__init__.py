"""realignkit.diagnose"""
