"""realignkit.report"""
