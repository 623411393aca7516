"""realignkit.methods"""
