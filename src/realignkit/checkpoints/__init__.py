"""realignkit.checkpoints"""
