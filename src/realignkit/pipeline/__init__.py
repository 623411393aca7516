"""realignkit.pipeline"""
